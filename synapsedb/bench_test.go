package synapsedb_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/transition-matrix/transition-matrix/internal/pgtest"
	"github.com/transition-matrix/transition-matrix/synapsedb"
	"github.com/transition-matrix/transition-matrix/synapsedb/synapsedbtest"
)

// benchTokens reads 100,000 access tokens (20,000 users with 5 devices each) per iteration.
func benchTokens(b *testing.B, dsn string, setup *sql.DB, backend string) {
	ctx := context.Background()
	if err := synapsedbtest.CreateSchema(ctx, setup); err != nil {
		b.Fatal(err)
	}
	if err := synapsedbtest.FillBulk(ctx, setup, backend, 20000, 5); err != nil {
		b.Fatal(err)
	}
	setup.Close()
	db, err := synapsedb.Open(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	b.ReportAllocs()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base, peak := ms.HeapAlloc, uint64(0)
	b.ResetTimer()
	for b.Loop() {
		n := 0
		if err := db.Tokens(ctx, func(synapsedb.Token) error {
			if n++; n%20000 == 0 {
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapAlloc)
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		if n != 100000 {
			b.Fatalf("%d tokens, want 100000", n)
		}
	}
	// Heap growth over the idle heap while streaming, sampled every 20,000 rows: bounded, not
	// proportional to the number of tokens.
	b.ReportMetric(float64(peak-min(peak, base))/(1<<20), "heap-MB")
}

func BenchmarkTokens100kSQLite(b *testing.B) {
	path := filepath.Join(b.TempDir(), "homeserver.db")
	benchTokens(b, path, synapsedbtest.OpenSQLite(b, path), synapsedb.SQLite)
}

func BenchmarkTokens100kPostgres(b *testing.B) {
	s := pgtest.Start(b)
	dsn := s.CreateDatabase(b)
	benchTokens(b, dsn, synapsedbtest.OpenPostgres(b, dsn), synapsedb.Postgres)
}
