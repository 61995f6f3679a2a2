package synapseclient

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
)

// UserMediaUsage is one user's local media: how many uploads and their total size in bytes.
type UserMediaUsage struct {
	UserID      string  `json:"user_id"`
	DisplayName *string `json:"displayname"`
	MediaCount  int64   `json:"media_count"`
	MediaLength int64   `json:"media_length"`
}

// UserMediaPage is one page of the users' media statistics; NextToken is nil on the last page.
type UserMediaPage struct {
	Users     []UserMediaUsage `json:"users"`
	Total     int              `json:"total"`
	NextToken *int             `json:"-"`
}

// UserMediaStatistics returns one page of the users that uploaded local media, from offset from
// (0 for the first page) with at most limit entries (0 for Synapse's default, 100).
// https://element-hq.github.io/synapse/latest/admin_api/statistics.html#users-media-usage-statistics
func (a *AdminClient) UserMediaStatistics(ctx context.Context, from, limit int) (*UserMediaPage, error) {
	q := url.Values{}
	if from > 0 {
		q.Set("from", strconv.Itoa(from))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out struct {
		UserMediaPage
		NextToken json.RawMessage `json:"next_token"`
	}
	const p = "/_synapse/admin/v1/statistics/users/media"
	if err := a.get(ctx, p, q.Encode(), &out); err != nil {
		return nil, err
	}
	page := out.UserMediaPage
	tok, err := flexToken(out.NextToken)
	if err != nil {
		return nil, fmt.Errorf("synapseclient: GET %s: next_token: %w", p, err)
	}
	if tok != "" {
		n, err := strconv.Atoi(tok)
		if err != nil {
			return nil, fmt.Errorf("synapseclient: GET %s: next_token %q is not an offset", p, tok)
		}
		page.NextToken = &n
	}
	page.Users = nonNil(page.Users)
	return &page, nil
}

// MediaTotals is the local media of the whole server.
type MediaTotals struct {
	Users int   // users with at least one upload
	Count int64 // uploads
	Bytes int64 // their total size
}

// LocalMediaTotals pages through the users' media statistics and adds them up.
// https://element-hq.github.io/synapse/latest/admin_api/statistics.html#users-media-usage-statistics
func (a *AdminClient) LocalMediaTotals(ctx context.Context) (*MediaTotals, error) {
	var t MediaTotals
	err := offsetPages("/_synapse/admin/v1/statistics/users/media", func(from int) (*int, int, error) {
		page, err := a.UserMediaStatistics(ctx, from, a.pageSize)
		if err != nil {
			return nil, 0, err
		}
		for _, u := range page.Users {
			t.Users++
			t.Count += u.MediaCount
			t.Bytes += u.MediaLength
		}
		return page.NextToken, len(page.Users), nil
	})
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// LocalMedia is one local upload as the admin API lists a user's media (Synapse 1.67 shape;
// later versions add fields, ignored here). Null columns decode as "" and 0.
type LocalMedia struct {
	MediaID            string `json:"media_id"`
	MediaType          string `json:"media_type"`
	MediaLength        int64  `json:"media_length"`
	UploadName         string `json:"upload_name"`
	CreatedTS          int64  `json:"created_ts"`
	LastAccessTS       int64  `json:"last_access_ts"`
	QuarantinedBy      string `json:"quarantined_by"`
	SafeFromQuarantine bool   `json:"safe_from_quarantine"`
	// Authenticated (Synapse ≥ 1.120; 0/1 on SQLite) marks media uploaded with
	// enable_authenticated_media on: Synapse serves it only on the authenticated endpoints.
	Authenticated Bool `json:"authenticated"`
	// SHA256 is the hex sha256 of the bytes, recorded at upload by Synapse releases after 1.120 (1.163 does; 1.120 does not); "" otherwise.
	SHA256 string `json:"sha256"`
}

// LocalMediaPage is one page of a user's uploads; NextToken is nil on the last page.
type LocalMediaPage struct {
	Media     []LocalMedia `json:"media"`
	Total     int          `json:"total"`
	NextToken *int         `json:"-"`
}

// UserMedia returns one page of the local media a user uploaded, oldest first (order_by=created_ts,
// dir=f), from offset from with at most limit items (0 for Synapse's default, 100).
// https://element-hq.github.io/synapse/latest/admin_api/user_admin_api.html#list-media-uploaded-by-a-user
func (a *AdminClient) UserMedia(ctx context.Context, userID string, from, limit int) (*LocalMediaPage, error) {
	q := url.Values{}
	q.Set("order_by", "created_ts")
	q.Set("dir", "f")
	if from > 0 {
		q.Set("from", strconv.Itoa(from))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out struct {
		Media     []mediaJSON     `json:"media"`
		Total     int             `json:"total"`
		NextToken json.RawMessage `json:"next_token"`
	}
	const tmpl = "/_synapse/admin/v1/users/{userId}/media"
	if err := a.get(ctx, tmpl, q.Encode(), &out, userID); err != nil {
		return nil, err
	}
	page := &LocalMediaPage{Total: out.Total, Media: make([]LocalMedia, 0, len(out.Media))}
	for _, m := range out.Media {
		page.Media = append(page.Media, m.toLocalMedia())
	}
	tok, err := flexToken(out.NextToken)
	if err != nil {
		return nil, fmt.Errorf("synapseclient: GET %s: next_token: %w", tmpl, err)
	}
	if tok != "" {
		n, err := strconv.Atoi(tok)
		if err != nil {
			return nil, fmt.Errorf("synapseclient: GET %s: next_token %q is not an offset", tmpl, tok)
		}
		page.NextToken = &n
	}
	return page, nil
}

// AllUserMedia pages through UserMedia and returns all of a user's uploads, oldest first.
// https://element-hq.github.io/synapse/latest/admin_api/user_admin_api.html#list-media-uploaded-by-a-user
func (a *AdminClient) AllUserMedia(ctx context.Context, userID string) ([]LocalMedia, error) {
	out := []LocalMedia{}
	err := offsetPages("/_synapse/admin/v1/users/{userId}/media", func(from int) (*int, int, error) {
		page, err := a.UserMedia(ctx, userID, from, a.pageSize)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, page.Media...)
		return page.NextToken, len(page.Media), nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// mediaJSON decodes a media item whose nullable columns may be null; safe_from_quarantine is a
// boolean on PostgreSQL and 0/1 on SQLite.
type mediaJSON struct {
	MediaID            string          `json:"media_id"`
	MediaType          *string         `json:"media_type"`
	MediaLength        *int64          `json:"media_length"`
	UploadName         *string         `json:"upload_name"`
	CreatedTS          *int64          `json:"created_ts"`
	LastAccessTS       *int64          `json:"last_access_ts"`
	QuarantinedBy      *string         `json:"quarantined_by"`
	SafeFromQuarantine json.RawMessage `json:"safe_from_quarantine"`
}

func (m mediaJSON) toLocalMedia() LocalMedia {
	deref := func(s *string) string {
		if s == nil {
			return ""
		}
		return *s
	}
	num := func(n *int64) int64 {
		if n == nil {
			return 0
		}
		return *n
	}
	safe := string(m.SafeFromQuarantine)
	return LocalMedia{MediaID: m.MediaID, MediaType: deref(m.MediaType), MediaLength: num(m.MediaLength),
		UploadName: deref(m.UploadName), CreatedTS: num(m.CreatedTS), LastAccessTS: num(m.LastAccessTS),
		QuarantinedBy: deref(m.QuarantinedBy), SafeFromQuarantine: safe == "true" || safe == "1"}
}
