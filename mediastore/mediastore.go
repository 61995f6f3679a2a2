// Package mediastore reads local media from Synapse's media_store_path, in the layout of
// synapse/media/filepath.py (MediaFilePaths): local_content/<id[0:2]>/<id[2:4]>/<id[4:]> for
// uploads and local_thumbnails/<id[0:2]>/<id[2:4]>/<id[4:]>/<w>-<h>-<top>-<sub>-<method> for
// their thumbnails. Every path component is checked as Synapse checks it, so no media ID can
// name a file outside the store.
package mediastore

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Store is a Synapse media store directory.
type Store struct {
	root string
}

// Open checks that dir is a directory and returns the store rooted there.
func Open(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("mediastore: no media store path given (synapse.media_store_path)")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("mediastore: %w", err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("mediastore: Synapse media store %s: %w", abs, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("mediastore: Synapse media store %s is not a directory", abs)
	}
	return &Store{root: abs}, nil
}

// Root is the store's absolute path.
func (s *Store) Root() string { return s.root }

// LocalContentPath is where Synapse keeps the local upload mediaID.
func (s *Store) LocalContentPath(mediaID string) (string, error) {
	parts, err := idParts(mediaID)
	if err != nil {
		return "", err
	}
	return s.join(append([]string{"local_content"}, parts...)...)
}

// LocalThumbnailDir is the directory holding the thumbnails of the local upload mediaID.
func (s *Store) LocalThumbnailDir(mediaID string) (string, error) {
	parts, err := idParts(mediaID)
	if err != nil {
		return "", err
	}
	return s.join(append([]string{"local_thumbnails"}, parts...)...)
}

// OpenLocal opens the file of the local upload mediaID and checks that it is a regular file of
// exactly length bytes (media_length); a missing or shorter file is an error naming both.
func (s *Store) OpenLocal(mediaID string, length int64) (*os.File, error) {
	p, err := s.LocalContentPath(mediaID)
	if err != nil {
		return nil, err
	}
	return openChecked(p, "media "+mediaID, length)
}

// ReadLocal reads the whole file of the local upload mediaID, checked as OpenLocal does.
func (s *Store) ReadLocal(mediaID string, length int64) ([]byte, error) {
	f, err := s.OpenLocal(mediaID, length)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("mediastore: reading media %s: %w", mediaID, err)
	}
	if int64(len(b)) != length {
		return nil, fmt.Errorf("mediastore: media %s changed while read: %d bytes, want %d", mediaID, len(b), length)
	}
	return b, nil
}

// Thumbnail is one thumbnail file of a local upload.
type Thumbnail struct {
	Width, Height int
	ContentType   string // "image/png"
	Method        string // "crop" or "scale"
	Size          int64
	Path          string
}

// LocalThumbnails lists the thumbnails of the local upload mediaID, sorted by file name; none (and
// no error) when it has no thumbnail directory. Files whose names do not follow Synapse's pattern
// are an error naming them.
func (s *Store) LocalThumbnails(mediaID string) ([]Thumbnail, error) {
	dir, err := s.LocalThumbnailDir(mediaID)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("mediastore: thumbnails of media %s: %w", mediaID, err)
	}
	var out []Thumbnail
	for _, e := range entries {
		th, err := parseThumbnailName(e.Name())
		if err != nil || !e.Type().IsRegular() {
			return nil, fmt.Errorf("mediastore: %s is not a thumbnail file of Synapse's (<w>-<h>-<top>-<sub>-<method>)", filepath.Join(dir, e.Name()))
		}
		info, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("mediastore: thumbnail %s: %w", filepath.Join(dir, e.Name()), err)
		}
		th.Size, th.Path = info.Size(), filepath.Join(dir, e.Name())
		out = append(out, th)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// ThumbnailFileName is Synapse's file name of a thumbnail ("<w>-<h>-<top>-<sub>-<method>").
func ThumbnailFileName(width, height int, contentType, method string) string {
	top, sub, _ := strings.Cut(contentType, "/")
	return fmt.Sprintf("%d-%d-%s-%s-%s", width, height, top, sub, method)
}

func parseThumbnailName(name string) (Thumbnail, error) {
	f := strings.SplitN(name, "-", 5)
	if len(f) != 5 || validComponent(name) != nil {
		return Thumbnail{}, errors.New("bad thumbnail name")
	}
	w, err1 := strconv.Atoi(f[0])
	h, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || w <= 0 || h <= 0 {
		return Thumbnail{}, errors.New("bad thumbnail size")
	}
	// The method is the last dash-separated field; a subtype may itself hold dashes.
	rest := f[3] + "-" + f[4]
	i := strings.LastIndexByte(rest, '-')
	return Thumbnail{Width: w, Height: h, ContentType: f[2] + "/" + rest[:i], Method: rest[i+1:]}, nil
}

// openChecked opens p, which must be a regular file (not a symlink) of exactly length bytes.
func openChecked(p, what string, length int64) (*os.File, error) {
	st, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("mediastore: %s: file %s is missing from the media store", what, p)
	}
	if err != nil {
		return nil, fmt.Errorf("mediastore: %s: %w", what, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("mediastore: %s: %s is not a regular file (%s)", what, p, st.Mode().Type())
	}
	if st.Size() != length {
		rel := "shorter"
		if st.Size() > length {
			rel = "longer"
		}
		return nil, fmt.Errorf("mediastore: %s: file %s holds %d bytes, %s than its media_length %d", what, p, st.Size(), rel, length)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("mediastore: %s: %w", what, err)
	}
	return f, nil
}

// idParts splits a media ID into Synapse's three path components, refusing IDs that could not
// be a file inside the store.
func idParts(mediaID string) ([]string, error) {
	if len(mediaID) < 5 {
		return nil, fmt.Errorf("mediastore: media ID %q is too short to be a Synapse media ID", mediaID)
	}
	parts := []string{mediaID[0:2], mediaID[2:4], mediaID[4:]}
	for _, p := range parts {
		if err := validComponent(p); err != nil {
			return nil, fmt.Errorf("mediastore: media ID %q: %w", mediaID, err)
		}
	}
	return parts, nil
}

// validComponent accepts what synapse/media/filepath.py's _validate_path_component accepts:
// letters, digits and "_-.[]:", not "", "." or "..".
func validComponent(c string) error {
	if c == "" || c == "." || c == ".." {
		return fmt.Errorf("path component %q would leave the media store", c)
	}
	for _, r := range c {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_-.[]:", r)
		if !ok {
			return fmt.Errorf("path component %q holds %q, which Synapse never writes", c, r)
		}
	}
	return nil
}

// join joins components under the root and checks, lexically, that the result stays inside.
func (s *Store) join(parts ...string) (string, error) {
	p := filepath.Join(append([]string{s.root}, parts...)...)
	rel, err := filepath.Rel(s.root, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return "", fmt.Errorf("mediastore: %s escapes the media store %s", p, s.root)
	}
	return p, nil
}
