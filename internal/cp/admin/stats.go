package admin

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
)

// Stats counts connections and requests for the `server` block of GET
// /status, in the shape of nginx's stub_status that Kong reports. Hook
// ConnState into every http.Server that should be counted.
type Stats struct {
	accepted atomic.Int64
	handled  atomic.Int64
	active   atomic.Int64
	waiting  atomic.Int64
	writing  atomic.Int64
	requests atomic.Int64

	mu   sync.Mutex
	idle map[net.Conn]bool
}

// ConnState is an http.Server.ConnState hook.
func (s *Stats) ConnState(c net.Conn, st http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.idle == nil {
		s.idle = map[net.Conn]bool{}
	}
	wasIdle := s.idle[c]
	switch st {
	case http.StateNew:
		s.accepted.Add(1)
		s.handled.Add(1)
		s.active.Add(1)
		s.idle[c] = false
	case http.StateActive:
		if wasIdle {
			s.waiting.Add(-1)
		}
		s.idle[c] = false
	case http.StateIdle:
		if !wasIdle {
			s.waiting.Add(1)
		}
		s.idle[c] = true
	case http.StateClosed, http.StateHijacked:
		if wasIdle {
			s.waiting.Add(-1)
		}
		if _, known := s.idle[c]; known {
			s.active.Add(-1)
		}
		delete(s.idle, c)
	}
}

// track counts one request in flight.
func (s *Stats) track() func() {
	s.requests.Add(1)
	s.writing.Add(1)
	return func() { s.writing.Add(-1) }
}

func (s *Stats) server() map[string]any {
	return map[string]any{
		"connections_active":   s.active.Load(),
		"connections_reading":  int64(0), // Go reads a request header and dispatches at once
		"connections_writing":  s.writing.Load(),
		"connections_waiting":  s.waiting.Load(),
		"connections_accepted": s.accepted.Load(),
		"connections_handled":  s.handled.Load(),
		"total_requests":       s.requests.Load(),
	}
}

// formatMemory renders a byte count the way Kong's /status does for
// ?unit=b|k|m|g&scale=n: bytes as a number, otherwise "12.34 MiB".
func formatMemory(n uint64, unit string, scale int) any {
	switch unit {
	case "b", "B":
		return n
	case "k", "K":
		return fmt.Sprintf("%.*f KiB", scale, float64(n)/(1<<10))
	case "g", "G":
		return fmt.Sprintf("%.*f GiB", scale, float64(n)/(1<<30))
	default:
		return fmt.Sprintf("%.*f MiB", scale, float64(n)/(1<<20))
	}
}

// parseUnitScale validates ?unit= and ?scale= (Kong: 400 on bad values).
func parseUnitScale(unit, scale string) (string, int, error) {
	if unit == "" {
		unit = "m"
	}
	switch unit {
	case "b", "B", "k", "K", "m", "M", "g", "G":
	default:
		return "", 0, fmt.Errorf("invalid unit '%s' (expected 'k/K', 'm/M', or 'g/G')", unit)
	}
	sc := 2
	if scale != "" {
		v, err := strconv.Atoi(scale)
		if err != nil || v < 0 || v > 10 {
			return "", 0, fmt.Errorf("invalid scale '%s' (expected an integer between 0 and 10)", scale)
		}
		sc = v
	}
	return unit, sc, nil
}
