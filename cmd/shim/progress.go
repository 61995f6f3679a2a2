package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/term"
)

// ticker reports a long command's progress: one line rewritten every 200 ms on a terminal, a log
// line every interval otherwise, and on a terminal a final line when it stops.
type ticker struct {
	done chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

// status gives the progress line and its log fields after elapsed; final asks for the last line.
type status func(elapsed time.Duration, final bool) (line string, fields []zap.Field)

func startTicker(w io.Writer, every time.Duration, log *zap.Logger, logMessage string, st status) *ticker {
	t := &ticker{done: make(chan struct{})}
	f, isFile := w.(*os.File)
	tty := isFile && term.IsTerminal(int(f.Fd()))
	if tty {
		every = 200 * time.Millisecond
	}
	start := time.Now()
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-t.done:
				if tty {
					line, _ := st(time.Since(start), true)
					fmt.Fprintf(w, "\r%s%s\n", line, strings.Repeat(" ", 10))
				}
				return
			case <-tick.C:
				line, fields := st(time.Since(start), false)
				if tty {
					fmt.Fprintf(w, "\r%s ", line)
				} else {
					log.Info(logMessage, fields...)
				}
			}
		}
	}()
	return t
}

// stop ends the reports; it may be called more than once.
func (t *ticker) stop() {
	t.once.Do(func() { close(t.done) })
	t.wg.Wait()
}

// lineReporter shows progress a command pushes: a line rewritten at most every 100 ms on a
// terminal, a log line every interval otherwise.
type lineReporter struct {
	w          io.Writer
	log        *zap.Logger
	logMessage string
	terminal   bool
	every      time.Duration

	mu    sync.Mutex
	last  time.Time
	drawn bool
}

func newLineReporter(w io.Writer, log *zap.Logger, logMessage string, every time.Duration) *lineReporter {
	p := &lineReporter{w: w, log: log, logMessage: logMessage, every: every}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.terminal = true
	}
	return p
}

// report draws line on a terminal, or logs fields, when it is time to.
func (p *lineReporter) report(line func() string, fields func() []zap.Field) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if p.terminal {
		if now.Sub(p.last) < 100*time.Millisecond {
			return
		}
		p.last = now
		fmt.Fprintf(p.w, "\r%s ", line())
		p.drawn = true
		return
	}
	if p.last.IsZero() {
		p.last = now
		return
	}
	if now.Sub(p.last) < p.every {
		return
	}
	p.last = now
	p.log.Info(p.logMessage, fields()...)
}

// done ends a drawn line.
func (p *lineReporter) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}
