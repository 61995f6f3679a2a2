package synapsesim

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"slices"
	"strings"

	"github.com/transition-matrix/transition-matrix/internal/world"
)

// mediaSortColumns are the order_by values Synapse accepts for a user's media (MediaSortOrder).
var mediaSortColumns = []string{"media_id", "upload_name", "created_ts", "last_access_ts", "media_length",
	"media_type", "quarantined_by", "safe_from_quarantine"}

// userMedia serves GET /_synapse/admin/v1/users/{userId}/media in Synapse 1.67's shape: media_id,
// media_type, media_length, upload_name, created_ts, last_access_ts, quarantined_by,
// safe_from_quarantine; newest first unless order_by or dir is given (then order_by defaults to
// created_ts and dir to f), ties by media_id; next_token an int present while from+limit < total.
// https://element-hq.github.io/synapse/latest/admin_api/user_admin_api.html#list-media-uploaded-by-a-user
func (s *Server) userMedia(w http.ResponseWriter, r *http.Request, v []string) {
	if _, ok := s.requireAdmin(w, r); !ok {
		return
	}
	u := s.adminUser(w, v[0])
	if u == nil {
		return
	}
	q := r.URL.Query()
	from, limit, ok := pageParams(w, q.Get("from"), q.Get("limit"), 100)
	if !ok {
		return
	}
	orderBy, dir := "created_ts", "b"
	if q.Has("order_by") || q.Has("dir") {
		orderBy, dir = cmp.Or(q.Get("order_by"), "created_ts"), cmp.Or(q.Get("dir"), "f")
	}
	if !slices.Contains(mediaSortColumns, orderBy) {
		writeError(w, http.StatusBadRequest, "M_INVALID_PARAM",
			"Query parameter \"order_by\" must be one of ["+strings.Join(mediaSortColumns, ", ")+"]")
		return
	}
	if dir != "f" && dir != "b" {
		writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", "Query parameter \"dir\" must be one of [f, b]")
		return
	}
	items := slices.Clone(u.Media)
	slices.SortStableFunc(items, func(a, b *world.Media) int {
		c := compareMedia(a, b, orderBy)
		if dir == "b" {
			c = -c
		}
		return cmp.Or(c, strings.Compare(a.ID, b.ID))
	})
	page := []obj{}
	for i := from; i < len(items) && i < from+limit; i++ {
		m := items[i]
		var lastAccess any
		if m.LastAccessTS != 0 {
			lastAccess = m.LastAccessTS
		}
		entry := obj{{"media_id", m.ID}, {"media_type", m.ContentType}, {"media_length", len(m.Bytes)},
			{"upload_name", nullable(m.UploadName)}, {"created_ts", m.CreatedTS}, {"last_access_ts", lastAccess},
			{"quarantined_by", nullable(m.QuarantinedBy)}, {"safe_from_quarantine", false}}
		if s.modernUsers() {
			entry = append(entry, kv{"user_id", u.ID}, kv{"url_cache", nil}, kv{"authenticated", 1}) // a 0/1 number live
		}
		if s.atLeast(1, 163) { // seen on 1.163.2, not on 1.120.2
			sum := sha256.Sum256(m.Bytes)
			entry = append(entry, kv{"sha256", hex.EncodeToString(sum[:])})
		}
		page = append(page, entry)
	}
	out := obj{{"media", page}, {"total", len(items)}}
	if from+limit < len(items) {
		out = append(out, kv{"next_token", from + len(page)})
	}
	writeJSON(w, http.StatusOK, out)
}

// compareMedia orders by one column as PostgreSQL does (nulls last in ascending order).
func compareMedia(a, b *world.Media, col string) int {
	str := func(x, y string) int {
		switch {
		case x == y:
			return 0
		case x == "":
			return 1
		case y == "":
			return -1
		}
		return strings.Compare(x, y)
	}
	num := func(x, y int64) int {
		switch {
		case x == y:
			return 0
		case x == 0:
			return 1
		case y == 0:
			return -1
		}
		return cmp.Compare(x, y)
	}
	switch col {
	case "media_id":
		return strings.Compare(a.ID, b.ID)
	case "upload_name":
		return str(a.UploadName, b.UploadName)
	case "last_access_ts":
		return num(a.LastAccessTS, b.LastAccessTS)
	case "media_length":
		return cmp.Compare(len(a.Bytes), len(b.Bytes))
	case "media_type":
		return strings.Compare(a.ContentType, b.ContentType)
	case "quarantined_by":
		return str(a.QuarantinedBy, b.QuarantinedBy)
	case "safe_from_quarantine":
		return 0
	}
	return cmp.Compare(a.CreatedTS, b.CreatedTS)
}
