//go:build unix

package cache

import (
	"bufio"
	"bytes"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kongfb/kongfb/pkg/config"
)

// killChildEnv carries a killSpec (JSON) to TestCacheKillChild.
const killChildEnv = "KONGFB_CACHE_KILL_CHILD"

// killSpec tells a child what to write and where to stop.
type killSpec struct {
	Dir    string   // the cache directory
	Key    string   // hex; empty: plain cache
	Docs   []string // files holding the documents to write, in turn
	Hashes []string // their config hashes
	Base   int      // sequence number of the first write
	Max    int      // writes before the child gives up waiting to be killed
	// PauseSeq/PauseStep: the child blocks in writeAtomic at this step of
	// this write until it is killed (PauseStep "" never blocks).
	PauseSeq  int
	PauseStep string
}

// originOf names write seq in the cache header: each write is told apart,
// while the documents alternate.
func originOf(seq int) string { return "write-" + strconv.Itoa(seq) }

// TestCacheKillChild is the body of one TestKillDuringWrite process: it
// writes the cache in a tight loop and reports each step on stdout.
func TestCacheKillChild(t *testing.T) {
	raw := os.Getenv(killChildEnv)
	if raw == "" {
		t.Skip("only run as a child of TestKillDuringWrite")
	}
	var s killSpec
	if err := json.Unmarshal([]byte(raw), &s); err != nil {
		t.Fatal(err)
	}
	docs := make([][]byte, len(s.Docs))
	for i, p := range s.Docs {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		docs[i] = b
	}
	var key []byte
	if s.Key != "" {
		var err error
		if key, err = hex.DecodeString(s.Key); err != nil {
			t.Fatal(err)
		}
	}
	c, err := Open(s.Dir, Options{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	seq := s.Base
	writeHook = func(step string) {
		// os.Stdout is unbuffered: the line is in the pipe before the
		// step is taken, so the parent sees every step reached.
		fmt.Printf("STEP %d %s\n", seq, step)
		if seq == s.PauseSeq && step == s.PauseStep {
			fmt.Printf("PAUSED %d %s\n", seq, step)
			// Block until killed; EOF means the parent is gone.
			_, _ = io.Copy(io.Discard, os.Stdin)
			os.Exit(3)
		}
	}
	for ; seq < s.Base+s.Max; seq++ {
		i := seq % len(docs)
		if err := c.Write(docs[i], Meta{ConfigHash: s.Hashes[i], Source: "cp", Origin: originOf(seq)}); err != nil {
			t.Fatalf("write %d: %v", seq, err)
		}
		fmt.Printf("DONE %d\n", seq)
	}
	t.Fatalf("wrote %d times without being killed", s.Max)
}

// killDocs writes n documents of about size bytes each into dir and returns
// their paths and config hashes. Their bulk is random service tags: it
// compresses badly, so that gzip and the file write take real time, while
// parsing stays cheap (one service, one route).
func killDocs(t *testing.T, dir string, n, size int) ([]string, []string) {
	t.Helper()
	const tagLen = 32 << 10
	paths, hashes := make([]string, n), make([]string, n)
	for d := range n {
		tags := make([]string, 0, size/tagLen+1)
		raw := make([]byte, tagLen*3/4)
		for len(tags)*tagLen < size {
			_, _ = crand.Read(raw)
			// base64url: printable, no ',' or '/', as tags require.
			tags = append(tags, base64.RawURLEncoding.EncodeToString(raw))
		}
		src, err := json.Marshal(map[string]any{
			"_format_version": "3.0",
			"services": []any{map[string]any{
				"name": "svc", "url": "http://127.0.0.1:9/", "tags": tags,
				"routes": []any{map[string]any{"name": "r", "paths": []string{fmt.Sprintf("/doc-%d", d)}}},
			}},
		})
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Parse(src, "kong.json")
		if err != nil {
			t.Fatal(err)
		}
		doc, err := cfg.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		hashes[d], _ = config.Hash(cfg)
		paths[d] = filepath.Join(dir, fmt.Sprintf("doc-%d.json", d))
		if err := os.WriteFile(paths[d], doc, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return paths, hashes
}

// killPlan is where one round kills its child.
type killPlan struct {
	seq   int           // the write the kill aims at
	step  string        // the step of that write that triggers the kill ("done": after Write returned)
	pause bool          // the child blocks at step until killed: the kill lands exactly there
	delay time.Duration // extra time before the kill, so that it lands anywhere (only without pause)
}

func (p killPlan) String() string {
	s := fmt.Sprintf("write %d, step %s", p.seq, p.step)
	if p.pause {
		s += " (paused)"
	}
	if p.delay > 0 {
		s += " + " + p.delay.String()
	}
	return s
}

// killRound is what one round observed.
type killRound struct {
	lastDone int           // the last write the child reported complete, -1 if none
	inFlight int           // the write after it, which the kill may have cut
	steps    []string      // the steps of inFlight the child reported
	fileTime time.Duration // the longest file part of a write (step begin to DONE)
	compress time.Duration // the longest time from a DONE to the next step begin
}

// runKillRound starts a child writing into spec.Dir and SIGKILLs it at plan.
func runKillRound(t *testing.T, spec killSpec, plan killPlan) killRound {
	t.Helper()
	if plan.pause {
		spec.PauseSeq, spec.PauseStep = plan.seq, plan.step
	} else {
		spec.PauseSeq = -1
	}
	raw, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCacheKillChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), killChildEnv+"="+string(raw))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()

	r := killRound{lastDone: -1}
	started := map[int]time.Time{}
	var lastDoneAt time.Time
	var output []string
	killed := false
	kill := func() {
		if !killed {
			killed = true
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Errorf("kill: %v", err)
			}
		}
	}
	trigger := fmt.Sprintf("STEP %d %s", plan.seq, plan.step)
	if plan.step == "done" {
		trigger = fmt.Sprintf("DONE %d", plan.seq)
	}
	if plan.pause {
		trigger = fmt.Sprintf("PAUSED %d %s", plan.seq, plan.step)
	}
	// Generous: a loaded machine under -race may be slow, but the child
	// never stops on its own before Max writes.
	deadline := time.After(2 * time.Minute)
	for lines != nil {
		select {
		case line, ok := <-lines:
			if !ok {
				lines = nil
				continue
			}
			output = append(output, line)
			f := strings.Fields(line)
			if len(f) >= 2 {
				seq, _ := strconv.Atoi(f[1])
				switch {
				case f[0] == "STEP" && len(f) == 3 && f[2] == stepBegin:
					started[seq] = time.Now()
					if !lastDoneAt.IsZero() {
						r.compress = max(r.compress, time.Since(lastDoneAt))
					}
				case f[0] == "DONE":
					r.lastDone = max(r.lastDone, seq)
					r.fileTime = max(r.fileTime, time.Since(started[seq]))
					lastDoneAt = time.Now()
				}
			}
			if line == trigger && !killed {
				if plan.delay > 0 {
					// Deliberate jitter: the kill lands somewhere inside
					// the next steps, not at an event.
					time.Sleep(plan.delay)
				}
				kill()
			}
		case <-deadline:
			kill()
			t.Errorf("no %q from the child within the deadline", trigger)
		}
	}
	err = cmd.Wait()
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die by SIGKILL (%v); output:\n%s\nstderr:\n%s", err, strings.Join(output, "\n"), stderr.String())
	}
	r.inFlight = spec.Base
	if r.lastDone >= 0 {
		r.inFlight = r.lastDone + 1
	}
	for _, line := range output {
		if rest, ok := strings.CutPrefix(line, fmt.Sprintf("STEP %d ", r.inFlight)); ok {
			r.steps = append(r.steps, rest)
		}
	}
	return r
}

// TestKillDuringWrite SIGKILLs processes while they write the cache, at
// every step of the write and at random points, and opens the cache after
// each kill as a restarted data plane does: it must hold the last write the
// process reported complete or the one it was in the middle of, whole and
// verified, never a corrupt or an older one; the temporary file a kill
// leaves must not get in the way.
func TestKillDuringWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills many processes")
	}
	// Documents of 2 MiB that compress badly: compressing one takes tens
	// of milliseconds and the file part of the write (create, write,
	// fsync, rename) milliseconds, so that kills land inside both. Under
	// -race everything is several times slower: 512 KiB and fewer rounds
	// keep the run time in bounds. Either way the payload is larger than
	// writeAtomic's 256 KiB buffer, so that stepPartial comes with the
	// file cut in the middle.
	size, randomRounds := 2<<20, 8
	if raceEnabled {
		size, randomRounds = 512<<10, 5
	}
	docs, hashes := killDocs(t, t.TempDir(), 3, size)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d (documents of %d KiB)", seed, size>>10)

	steps := []string{stepBegin, stepCreated, stepPartial, stepWritten, stepSynced, stepRenamed}
	for _, mode := range []struct {
		name string
		key  []byte
	}{{"plain", nil}, {"encrypted", testKey(t)}} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, uint64(len(mode.key))))
			dir := t.TempDir()
			spec := killSpec{Dir: dir, Key: hex.EncodeToString(mode.key), Docs: docs, Hashes: hashes, Max: 1000}
			// held is the write the cache holds (-1: none yet); a new
			// round's child starts on top of it, as a restarted node does.
			held := -1
			// The longest file part of a write seen (step begin to DONE)
			// and the longest compression before it (DONE to step begin).
			var fileTime, compress time.Duration
			jitter := func(d time.Duration) time.Duration {
				return time.Duration(rng.Int64N(int64(max(d, time.Millisecond))))
			}
			leftovers, cut := 0, 0
			rounds := len(steps) + randomRounds
			for round := range rounds {
				spec.Base = round * 1000
				plan := killPlan{seq: spec.Base + rng.IntN(2)}
				switch {
				case round < len(steps):
					// Every step once, exactly.
					plan.step, plan.pause = steps[round], true
				case rng.IntN(3) == 0:
					// Anywhere in the next write, compression included.
					plan.step, plan.delay = "done", jitter(compress+fileTime)
				default:
					// Anywhere in the file part of the write.
					plan.step = steps[rng.IntN(len(steps)-1)]
					plan.delay = jitter(fileTime)
				}
				r := runKillRound(t, spec, plan)
				fileTime, compress = max(fileTime, r.fileTime), max(compress, r.compress)

				// What was complete, and what may have been in flight.
				complete := held
				if r.lastDone >= 0 {
					complete = r.lastDone
				}
				inFlight := r.inFlight
				reached := func(s string) bool {
					for _, x := range r.steps {
						if x == s {
							return true
						}
					}
					return false
				}

				temps := aside(t, dir, tempPrefix)
				if len(temps) > 0 {
					leftovers++
					if st, err := os.Stat(temps[0]); err == nil && st.Size() > 0 && !tempComplete(t, temps[0]) {
						cut++
					}
				}
				if plan.pause {
					// The kill landed exactly at plan.step.
					wantTemp := plan.step != stepBegin && plan.step != stepRenamed
					if (len(temps) == 1) != wantTemp || len(temps) > 1 {
						t.Errorf("round %d (%v): temporary files %v", round, plan, temps)
					}
					if plan.step == stepPartial && len(temps) == 1 {
						if st, err := os.Stat(temps[0]); err != nil || st.Size() == 0 || tempComplete(t, temps[0]) {
							t.Errorf("round %d (%v): the temporary file is not cut in the middle (%v)", round, plan, err)
						}
					}
				}

				c, err := Open(dir, Options{Key: mode.key})
				if err != nil {
					t.Fatalf("round %d (%v): Open after the kill: %v", round, plan, err)
				}
				if left := aside(t, dir, tempPrefix); len(left) != 0 {
					t.Errorf("round %d (%v): temporary files left after Open: %v", round, plan, left)
				}
				e, err := c.Load()
				_ = c.Close()
				got := -1
				switch {
				case errors.Is(err, fs.ErrNotExist):
				case err != nil:
					t.Fatalf("round %d (%v): Load after the kill: %v", round, plan, err)
				default:
					got = checkEntry(t, e, mode.key != nil, hashes)
				}
				switch {
				case got == complete:
					// The in-flight write never reached its rename.
					if reached(stepRenamed) {
						t.Errorf("round %d (%v): write %d was renamed in place, yet the cache holds write %d", round, plan, inFlight, got)
					}
				case got == inFlight && got >= 0:
					if !reached(stepSynced) {
						t.Errorf("round %d (%v): the cache holds write %d, which had not reached its rename (steps %v)", round, plan, got, r.steps)
					}
				default:
					t.Fatalf("round %d (%v): the cache holds write %d; want the last complete write %d or the one in flight %d (steps %v)",
						round, plan, got, complete, inFlight, r.steps)
				}
				if plan.pause {
					want := complete
					if plan.step == stepRenamed {
						want = plan.seq
					}
					if got != want {
						t.Errorf("round %d (%v): the cache holds write %d, want %d", round, plan, got, want)
					}
				}
				for _, p := range []string{corruptPrefix, unreadablePref} {
					if m := aside(t, dir, p); len(m) != 0 {
						t.Errorf("round %d (%v): cache set aside: %v", round, plan, m)
					}
				}
				held = got
			}
			t.Logf("%d rounds; longest compression %v, longest file part of a write %v; %d kills left a temporary file, %d of them cut in the middle",
				rounds, compress, fileTime, leftovers, cut)
		})
	}
}

// checkEntry verifies an entry read back after a kill and returns its write
// sequence number.
func checkEntry(t *testing.T, e *Entry, encrypted bool, hashes []string) int {
	t.Helper()
	seq, err := strconv.Atoi(strings.TrimPrefix(e.Header.Origin, "write-"))
	if err != nil || !strings.HasPrefix(e.Header.Origin, "write-") {
		t.Fatalf("cache origin %q is none of the test's writes", e.Header.Origin)
	}
	if want := hashes[seq%len(hashes)]; e.Header.ConfigHash != want {
		t.Errorf("write %d: header hash %s, want %s", seq, e.Header.ConfigHash, want)
	}
	// Beyond the file checksum: the document read back is the one written.
	if h, _ := config.Hash(e.Config); h != e.Header.ConfigHash {
		t.Errorf("write %d: the configuration read back hashes %s, header says %s", seq, h, e.Header.ConfigHash)
	}
	if wantEnc := map[bool]string{true: EncryptionAESGCM, false: EncryptionNone}[encrypted]; e.Header.Encryption != wantEnc {
		t.Errorf("write %d: encryption %q, want %q", seq, e.Header.Encryption, wantEnc)
	}
	return seq
}

// tempComplete reports whether a temporary file a kill left holds a whole
// cache file (killed after its last write) rather than a cut one.
func tempComplete(t *testing.T, path string) bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rest, ok := bytes.CutPrefix(b, []byte(magic))
	if !ok {
		return false
	}
	hdr, payload, ok := bytes.Cut(rest, []byte("\n"))
	if !ok {
		return false
	}
	var h Header
	return json.Unmarshal(hdr, &h) == nil && int64(len(payload)) == h.PayloadSize
}
