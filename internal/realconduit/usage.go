//go:build conduit

package realconduit

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat (100 on Linux).
const clockTicks = 100

// Usage is a process's CPU time and peak memory over a span, from /proc.
type Usage struct {
	CPU     time.Duration // user + system time spent in the span
	PeakRSS int64         // bytes, the highest resident set size sampled
	Wall    time.Duration
}

// Sampler samples a process's /proc entries until Stop.
type Sampler struct {
	pid       int
	start     time.Time
	startCPU  time.Duration
	mu        sync.Mutex
	peak      int64
	stop      chan struct{}
	done      chan struct{}
	lastCPU   time.Duration
	sampleErr error
}

// StartSampler begins sampling pid every 100 ms.
func StartSampler(pid int) (*Sampler, error) {
	cpu, err := procCPU(pid)
	if err != nil {
		return nil, err
	}
	s := &Sampler{pid: pid, start: time.Now(), startCPU: cpu, lastCPU: cpu, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			s.sample()
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s, nil
}

func (s *Sampler) sample() {
	rss, err := procRSS(s.pid)
	cpu, err2 := procCPU(s.pid)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil && rss > s.peak {
		s.peak = rss
	}
	if err2 == nil {
		s.lastCPU = cpu
	}
}

// Stop ends sampling and returns the usage since StartSampler.
func (s *Sampler) Stop() Usage {
	close(s.stop)
	<-s.done
	s.sample()
	s.mu.Lock()
	defer s.mu.Unlock()
	return Usage{CPU: s.lastCPU - s.startCPU, PeakRSS: s.peak, Wall: time.Since(s.start)}
}

func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields after the last ')' are fixed.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// MetricSum adds up every sample of a Prometheus metric (all label sets) in a text exposition.
func MetricSum(text, name string) float64 {
	var sum float64
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			sum += v
		}
	}
	return sum
}
