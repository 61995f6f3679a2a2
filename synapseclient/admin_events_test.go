package synapseclient

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/transition-matrix/transition-matrix/internal/fixtures"
)

func TestFetchEventAndRoomMessagesOnNewServer(t *testing.T) {
	f := newFake(t)
	ev := fixtures.Load(t, "fed_event_a_latest")
	pdu := rawList(t, ev.Response.Body, "pdus")[0]
	fetchBody := []byte(`{"event": ` + string(pdu) + `}`)
	const eventID = "$gccEMmLNe4QPXsoArt7kezDyb23I1y7kRR6nZ6oevD0"
	f.handle("GET", "/_synapse/admin/v1/fetch_event/%24gccEMmLNe4QPXsoArt7kezDyb23I1y7kRR6nZ6oevD0", respond(200, fetchBody))
	bf := fixtures.Load(t, "fed_backfill_a")
	pdus := rawList(t, bf.Response.Body, "pdus")
	msgBody, _ := json.Marshal(map[string]any{"chunk": pdus[:5], "start": "t1", "end": "t2"})
	pdus = rawList(t, msgBody, "chunk") // the bytes as served
	f.handle("GET", "/_synapse/admin/v1/rooms/%21FxOZIdiZlcgPsSDLHo%3Asynapse.test/messages?raw=true&dir=b&limit=5", func(w http.ResponseWriter, r *http.Request) {
		respond(200, msgBody)(w, r)
	})
	c, _ := newTestClient(t, f, func(cfg *Config) { cfg.ServerVersion = "1.140.0rc1" })
	p, err := c.Admin().FetchEvent(ctxT(t), eventID)
	if err != nil {
		t.Fatal(err)
	}
	if string(p.Raw) != string(pdu) || p.Depth != 264 || p.Type != "m.room.message" {
		t.Errorf("fetched %s depth %d", p.Type, p.Depth)
	}
	page, err := c.Admin().RoomMessages(ctxT(t), "!FxOZIdiZlcgPsSDLHo:synapse.test", MessagesOptions{Dir: "b", Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Chunk) != 5 || page.End != "t2" || string(page.Chunk[4].Raw) != string(pdus[4]) || page.Chunk[0].Depth != 264 {
		t.Errorf("page = %d events, end %q", len(page.Chunk), page.End)
	}
}
