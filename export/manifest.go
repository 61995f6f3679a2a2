package export

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"

	"github.com/transition-matrix/transition-matrix/exportfmt"
)

// encodeJSON renders v compactly without HTML escaping, with a final newline.
func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// readManifest loads OUT/manifest.json; ok is false when there is none.
func readManifest(fsys FS) (m *exportfmt.Manifest, ok bool, err error) {
	data, err := fsys.ReadFile(exportfmt.ManifestName)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading %s: %w", exportfmt.ManifestName, err)
	}
	m, err = exportfmt.ParseManifest(data)
	switch {
	case errors.Is(err, exportfmt.ErrNotManifest):
		return nil, false, fmt.Errorf("%s: %w: move it away or use a new directory", exportfmt.ManifestName, err)
	case err != nil:
		return nil, false, fmt.Errorf("%s: %w; this shim writes %q version %d", exportfmt.ManifestName, err, exportfmt.Format, exportfmt.FormatVersion)
	}
	return m, true, nil
}
