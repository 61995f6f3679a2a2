// Package pgtest starts a throwaway PostgreSQL server on loopback for tests: initdb into a
// temporary directory, postgres on a free port, stopped and removed when the test ends. It uses
// Debian's binaries (/usr/lib/postgresql/<version>/bin, package postgresql) or those on PATH; when
// there are none the test is skipped, or fails when the environment variable CI is set.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Server is a running throwaway PostgreSQL server.
type Server struct {
	Host     string // "127.0.0.1"
	Port     int
	User     string // the superuser
	Password string
	dir      string
}

// Start initialises and starts a PostgreSQL server for the test and stops it in t.Cleanup.
// PostgreSQL refuses to run as root, so as root it runs as the "postgres" system user.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := findBinaries()
	if bin == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("pgtest: no PostgreSQL binaries (initdb, pg_ctl, postgres) in /usr/lib/postgresql/*/bin or on PATH; CI must install Debian's postgresql")
		}
		t.Skip("pgtest: no PostgreSQL binaries (install Debian's postgresql)")
	}
	as, err := runAs()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if as != nil {
		if err := os.Chown(dir, as.uid, as.gid); err != nil {
			t.Fatal(err)
		}
	}
	pw := make([]byte, 16)
	_, _ = rand.Read(pw)
	s := &Server{Host: "127.0.0.1", User: "tm", Password: hex.EncodeToString(pw), dir: dir}
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte(s.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if as != nil {
		if err := os.Chown(pwFile, as.uid, as.gid); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := command(as, filepath.Join(bin, "initdb"), "-D", data, "-U", s.User, "--pwfile", pwFile,
		"--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync").CombinedOutput(); err != nil {
		t.Fatalf("pgtest: initdb: %v\n%s", err, out)
	}
	if s.Port, err = freePort(); err != nil {
		t.Fatal(err)
	}
	opts := strings.Join([]string{"-p", strconv.Itoa(s.Port), "-k", dir, "-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "shared_buffers=16MB",
		"-c", "max_connections=30"}, " ")
	logFile := filepath.Join(dir, "postgres.log")
	// pg_ctl -w returns once the server accepts connections (it polls the postmaster.pid status).
	start := command(as, filepath.Join(bin, "pg_ctl"), "start", "-w", "-t", "120", "-D", data, "-l", logFile, "-o", opts)
	if out, err := start.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(logFile)
		t.Fatalf("pgtest: pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	t.Cleanup(func() {
		if out, err := command(as, filepath.Join(bin, "pg_ctl"), "stop", "-w", "-m", "immediate", "-D", data).CombinedOutput(); err != nil {
			t.Errorf("pgtest: pg_ctl stop: %v\n%s", err, out)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		log, _ := os.ReadFile(logFile)
		t.Fatalf("pgtest: connect after start: %v\n%s", err, log)
	}
	conn.Close(ctx)
	return s
}

// DSN is the URL of database name on the server, as its superuser.
func (s *Server) DSN(name string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(s.User, s.Password), Host: net.JoinHostPort(s.Host, strconv.Itoa(s.Port)),
		Path: "/" + name, RawQuery: "sslmode=disable"}
	return u.String()
}

// CreateDatabase creates an empty database with a fresh name and returns its DSN.
func (s *Server) CreateDatabase(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "db_" + hex.EncodeToString(b)
	// Synapse requires C collation (synapse/storage/engines/postgres.py).
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"); err != nil {
		t.Fatal(err)
	}
	return s.DSN(name)
}

// findBinaries returns the directory holding initdb, pg_ctl and postgres: the newest Debian
// version, else the directory of pg_ctl on PATH, else "".
func findBinaries() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dirs = append(dirs, filepath.Dir(p))
	}
	for _, d := range dirs {
		ok := true
		for _, b := range []string{"initdb", "pg_ctl", "postgres"} {
			if st, err := os.Stat(filepath.Join(d, b)); err != nil || st.IsDir() {
				ok = false
			}
		}
		if ok {
			return d
		}
	}
	return ""
}

func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

type account struct{ uid, gid int }

// runAs returns the postgres system account when running as root, nil otherwise.
func runAs() (*account, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pgtest: running as root, and PostgreSQL refuses root: no postgres system user to run it as (%v)", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &account{uid: uid, gid: gid}, nil
}

// command runs name as the account (through runuser) or as the current user.
func command(as *account, name string, args ...string) *exec.Cmd {
	if as == nil {
		return exec.Command(name, args...)
	}
	return exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
