package drill

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// eventually polls cond every 5 ms for up to 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ok, _ := poll(context.Background(), 5*time.Millisecond, 10*time.Second, func() (bool, error) { return cond(), nil })
	if !ok {
		t.Fatalf("timed out waiting for %s", what)
	}
}

func TestProberRecordsPausesAndResumes(t *testing.T) {
	var aHits, bHits atomic.Int64
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		aHits.Add(1)
		if r.URL.Path != "/drill" {
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer a.Close()
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bHits.Add(1)
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer b.Close()
	addr := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

	p := NewProber("/drill", 2*time.Millisecond, time.Second)
	p.Add("dp-1", addr(a))
	eventually(t, "samples from dp-1", func() bool { return p.Count() >= 5 })

	// Paused: no request is in flight once Pause returns, and none is sent.
	p.Pause("dp-1")
	n := aHits.Load()
	paused := p.Count()
	// A bounded wait for something that must NOT happen: several probe
	// intervals.
	time.Sleep(30 * time.Millisecond)
	if aHits.Load() != n || p.Count() != paused {
		t.Fatalf("requests sent while paused: hits %d -> %d, samples %d -> %d", n, aHits.Load(), paused, p.Count())
	}
	// Resumed at another address (a restarted node).
	p.Resume("dp-1", addr(b))
	// Wait for recorded samples, not server hits: a request the server has
	// seen may still be in flight when Stop cancels it, and Stop drops it.
	eventually(t, "samples from the new address", func() bool { return p.Count() >= paused+3 })
	samples := p.Stop()
	after := len(samples)
	time.Sleep(20 * time.Millisecond)
	if p.Count() != after {
		t.Fatal("samples recorded after Stop")
	}
	var ok, bad int
	for i, s := range samples {
		if s.Target != "dp-1" || s.At.IsZero() {
			t.Fatalf("sample %d: %+v", i, s)
		}
		switch s.Status {
		case 200:
			ok++
			if i >= paused {
				t.Fatalf("sample %d is a 200 after the resume to the 502 server", i)
			}
		case 502:
			bad++
		default:
			t.Fatalf("sample %d: %+v", i, s)
		}
	}
	if ok < 5 || bad < 3 {
		t.Fatalf("%d ok and %d 502 samples", ok, bad)
	}
}

func TestProberTransportError(t *testing.T) {
	s := httptest.NewServer(http.NotFoundHandler())
	gone := strings.TrimPrefix(s.URL, "http://")
	s.Close()
	p := NewProber("/drill", 2*time.Millisecond, time.Second)
	p.Add("dp-1", gone)
	eventually(t, "a failed request", func() bool { return p.Count() >= 2 })
	samples := p.Stop()
	if samples[0].Status != 0 || samples[0].Err == "" || samples[0].OK() {
		t.Fatalf("sample to a closed port: %+v", samples[0])
	}
	st := Summarize(PhaseDuring, "dp-1", samples, time.Second)
	if st.Status.TransportErrors != len(samples) || st.ErrorRate != 1 {
		t.Fatalf("summary %+v", st)
	}
}
