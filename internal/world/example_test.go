package world_test

import (
	"fmt"

	"github.com/transition-matrix/transition-matrix/internal/world"
)

func ExampleGenerate() {
	w, err := world.Generate(world.Options{Seed: 1, Rooms: 1, MessagesPerRoom: 10})
	if err != nil {
		panic(err)
	}
	r := w.RoomsOfKind(world.KindAllLeft)[0]
	st, _ := r.StateBefore(r.Latest().ID)
	fmt.Println(w.ServerName, len(w.Rooms), r.Version, r.LocalJoinedNow(), st.LocalJoined())
	// Output: synapse.test 8 6 false 1
}
