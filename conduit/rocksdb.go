package conduit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/transition-matrix/transition-matrix/conduit/rocksdbkv"
)

// rocksStore is Conduit's RocksDB backend: the database_path directory, one column family per
// tree (src/database/abstraction/rocksdb.rs), opened by the shim-rocksdb helper. An Update's
// writes are kept here and sent at commit as one write batch; reads inside it see them.
type rocksStore struct {
	kv      *rocksdbkv.DB
	pending map[string]map[string]*[]byte // tree → key → value (nil = delete)
	inTx    bool
}

func openRocksDB(dir, helper string, readOnly, lock bool) (*rocksStore, error) {
	kv, err := rocksdbkv.Open(dir, rocksdbkv.Options{Helper: helper, ReadOnly: readOnly, Lock: lock})
	if err != nil {
		switch {
		case errors.Is(err, rocksdbkv.ErrInUse):
			return nil, fmt.Errorf("%w: %v", ErrInUse, err)
		case errors.Is(err, rocksdbkv.ErrNoHelper):
			return nil, fmt.Errorf("conduit: the RocksDB backend needs the shim-rocksdb helper: %w", err)
		}
		return nil, fmt.Errorf("%w: %s is not a RocksDB database the helper can open: %v", ErrNotCreatedByConduit, dir, err)
	}
	return &rocksStore{kv: kv}, nil
}

func (s *rocksStore) trees(context.Context) (map[string]bool, error) {
	cfs, err := s.kv.ColumnFamilies()
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, cf := range cfs {
		if cf != "default" { // RocksDB's own; Conduit never opens it as a tree
			out[cf] = true
		}
	}
	return out, nil
}

// shape has nothing to check: a column family holds bytes, as Conduit's trees.
func (s *rocksStore) shape(context.Context, []string) ([]string, error) { return nil, nil }

func (s *rocksStore) get(_ context.Context, tree string, key []byte) ([]byte, bool, error) {
	if v, ok := s.pending[tree][string(key)]; ok {
		if v == nil {
			return nil, false, nil
		}
		return bytes.Clone(*v), true, nil
	}
	v, ok, err := s.kv.Get(tree, key)
	if err != nil {
		return nil, false, fmt.Errorf("conduit: read %s: %w", tree, err)
	}
	return nonNil(v), ok, nil
}

func (s *rocksStore) scan(_ context.Context, tree string, prefix []byte, fn func(k, v []byte) error) error {
	type kv struct{ k, v []byte }
	var rows []kv
	err := s.kv.Scan(tree, prefix, func(k, v []byte) error {
		rows = append(rows, kv{nonNil(k), nonNil(v)})
		return nil
	})
	if err != nil {
		return fmt.Errorf("conduit: scan %s: %w", tree, err)
	}
	if p := s.pending[tree]; len(p) > 0 {
		// Merge the batch so far: its puts replace or add rows, its deletes remove them.
		merged := map[string][]byte{}
		for _, r := range rows {
			merged[string(r.k)] = r.v
		}
		for k, v := range p {
			if !bytes.HasPrefix([]byte(k), prefix) {
				continue
			}
			if v == nil {
				delete(merged, k)
			} else {
				merged[k] = bytes.Clone(*v)
			}
		}
		rows = rows[:0]
		for k, v := range merged {
			rows = append(rows, kv{[]byte(k), v})
		}
		sort.Slice(rows, func(i, j int) bool { return bytes.Compare(rows[i].k, rows[j].k) < 0 })
	}
	for _, r := range rows {
		if err := fn(r.k, r.v); err != nil {
			return err
		}
	}
	return nil
}

func (s *rocksStore) set(tree string, key []byte, v *[]byte) error {
	if !s.inTx {
		return errors.New("conduit: write outside an Update")
	}
	if s.pending[tree] == nil {
		s.pending[tree] = map[string]*[]byte{}
	}
	s.pending[tree][string(key)] = v
	return nil
}

func (s *rocksStore) insert(_ context.Context, tree string, key, value []byte) error {
	v := bytes.Clone(value)
	return s.set(tree, key, &v)
}

func (s *rocksStore) remove(_ context.Context, tree string, key []byte) error {
	return s.set(tree, key, nil)
}

func (s *rocksStore) begin(context.Context) error {
	if s.inTx {
		return errors.New("conduit: nested Update")
	}
	s.inTx, s.pending = true, map[string]map[string]*[]byte{}
	return nil
}

// commit sends the Update as one write batch (synced), in tree and key order.
func (s *rocksStore) commit(context.Context) error {
	var ops []rocksdbkv.Op
	trees := make([]string, 0, len(s.pending))
	for t := range s.pending {
		trees = append(trees, t)
	}
	sort.Strings(trees)
	for _, t := range trees {
		keys := make([]string, 0, len(s.pending[t]))
		for k := range s.pending[t] {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			v := s.pending[t][k]
			if v == nil {
				ops = append(ops, rocksdbkv.Op{CF: t, Key: []byte(k), Delete: true})
			} else {
				ops = append(ops, rocksdbkv.Op{CF: t, Key: []byte(k), Value: *v})
			}
		}
	}
	s.inTx, s.pending = false, nil
	if len(ops) == 0 {
		return nil
	}
	if err := s.kv.Write(ops); err != nil {
		return fmt.Errorf("conduit: commit: %w", err)
	}
	return nil
}

func (s *rocksStore) rollback() { s.inTx, s.pending = false, nil }

func (s *rocksStore) close() error { return s.kv.Close() }
