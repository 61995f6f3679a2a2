package synapseclient

import (
	"io"
	"net/http"
	"testing"
)

func TestUserMediaDecodesNullsAndSQLiteBooleans(t *testing.T) {
	f := newFake(t)
	f.handle("GET", "/_synapse/admin/v1/users/%40a%3Asynapse.test/media", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("order_by") != "created_ts" || r.URL.Query().Get("dir") != "f" {
			t.Errorf("query %s: want oldest first", r.URL.RawQuery)
		}
		io.WriteString(w, `{"media":[
			{"media_id":"AAAAAAAAAAAAAAAAAAAAAAAA","media_type":"image/png","media_length":12,"upload_name":null,"created_ts":5,"last_access_ts":null,"quarantined_by":null,"safe_from_quarantine":1},
			{"media_id":"BBBBBBBBBBBBBBBBBBBBBBBB","media_type":"text/plain","media_length":3,"upload_name":"a.txt","created_ts":6,"last_access_ts":7,"quarantined_by":"@admin:synapse.test","safe_from_quarantine":false,"sha256":"ab","authenticated":true}
		],"total":2}`)
	})
	c, _ := newTestClient(t, f)
	got, err := c.Admin().AllUserMedia(t.Context(), "@a:synapse.test")
	if err != nil {
		t.Fatal(err)
	}
	want := []LocalMedia{
		{MediaID: "AAAAAAAAAAAAAAAAAAAAAAAA", MediaType: "image/png", MediaLength: 12, CreatedTS: 5, SafeFromQuarantine: true},
		{MediaID: "BBBBBBBBBBBBBBBBBBBBBBBB", MediaType: "text/plain", MediaLength: 3, UploadName: "a.txt", CreatedTS: 6, LastAccessTS: 7, QuarantinedBy: "@admin:synapse.test"},
	}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}
