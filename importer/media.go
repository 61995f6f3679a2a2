package importer

import (
	"context"
	"fmt"
	"io"

	"golang.org/x/sync/errgroup"

	"github.com/transition-matrix/transition-matrix/mediastore"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// SynapseMedia lists every exported user's uploads through Synapse's admin API and opens their
// files in Synapse's media store.
type SynapseMedia struct {
	Admin *synapseclient.AdminClient
	Store *mediastore.Store
	// Jobs is how many users' lists are read at once (default DefaultJobs).
	Jobs int
}

// LocalMedia returns the uploads of users, each user's oldest first.
// https://element-hq.github.io/synapse/latest/admin_api/user_admin_api.html#list-media-uploaded-by-a-user
func (s SynapseMedia) LocalMedia(ctx context.Context, users []string) ([]MediaItem, error) {
	jobs := s.Jobs
	if jobs <= 0 {
		jobs = DefaultJobs
	}
	lists := make([][]MediaItem, len(users))
	errs := make([]error, len(users))
	var workers errgroup.Group
	workers.SetLimit(jobs)
	for i := range users {
		workers.Go(func() error {
			media, err := s.Admin.AllUserMedia(ctx, users[i])
			if err != nil {
				errs[i] = fmt.Errorf("media of %s: %w", users[i], err)
				return nil
			}
			for _, m := range media {
				lists[i] = append(lists[i], MediaItem{MediaID: m.MediaID, ContentType: m.MediaType, UploadName: m.UploadName,
					UserID: users[i], CreatedTS: m.CreatedTS, Size: m.MediaLength, Quarantined: m.QuarantinedBy != "",
					Authenticated: bool(m.Authenticated), SHA256: m.SHA256})
			}
			return nil
		})
	}
	_ = workers.Wait() // errors are kept per user, the first in user order is returned
	var out []MediaItem
	for i := range users {
		if errs[i] != nil {
			return nil, errs[i]
		}
		out = append(out, lists[i]...)
	}
	return out, nil
}

// Open opens the item's file in the media store, checking its size against the admin API's.
func (s SynapseMedia) Open(_ context.Context, m MediaItem) (io.ReadCloser, error) {
	return s.Store.OpenLocal(m.MediaID, m.Size)
}
