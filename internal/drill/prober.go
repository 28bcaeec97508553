package drill

import (
	"context"
	"io"
	"net/http"
	"sync"
	"time"
)

// Prober sends GET path to every target every interval, one request at a
// time per target, and records each answer. Stop ends it and returns the
// samples.
type Prober struct {
	interval time.Duration
	path     string
	timeout  time.Duration

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	samples []Sample
	targets map[string]*probeTarget
}

type probeTarget struct {
	name string
	// mu is held for the whole of each request, so that Pause returns
	// only once no request to the target is in flight.
	mu     sync.Mutex
	addr   string
	paused bool
	client *http.Client
}

// NewProber returns a prober that sends GET path every interval, each
// request bounded by timeout.
func NewProber(path string, interval, timeout time.Duration) *Prober {
	ctx, cancel := context.WithCancel(context.Background())
	return &Prober{interval: interval, path: path, timeout: timeout, ctx: ctx, cancel: cancel, targets: map[string]*probeTarget{}}
}

// Add starts probing name at addr (host:port).
func (p *Prober) Add(name, addr string) {
	t := &probeTarget{name: name, addr: addr, client: &http.Client{
		Timeout: p.timeout,
		Transport: &http.Transport{
			MaxIdleConnsPerHost: 2,
			IdleConnTimeout:     30 * time.Second,
		},
	}}
	p.mu.Lock()
	p.targets[name] = t
	p.mu.Unlock()
	p.wg.Add(1)
	go p.run(t)
}

// Pause stops probing name; when it returns no request to it is in flight.
func (p *Prober) Pause(name string) {
	if t := p.target(name); t != nil {
		t.mu.Lock()
		t.paused = true
		t.mu.Unlock()
	}
}

// Resume probes name again, at addr.
func (p *Prober) Resume(name, addr string) {
	if t := p.target(name); t != nil {
		t.mu.Lock()
		t.paused, t.addr = false, addr
		t.client.CloseIdleConnections()
		t.mu.Unlock()
	}
}

func (p *Prober) target(name string) *probeTarget {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.targets[name]
}

// Stop ends every probe loop and returns the samples in the order they
// were recorded.
func (p *Prober) Stop() []Sample {
	p.cancel()
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, t := range p.targets {
		t.client.CloseIdleConnections()
	}
	return append([]Sample(nil), p.samples...)
}

// Count is the number of samples so far.
func (p *Prober) Count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.samples)
}

func (p *Prober) run(t *probeTarget) {
	defer p.wg.Done()
	tick := time.NewTicker(p.interval)
	defer tick.Stop()
	for {
		p.once(t)
		select {
		case <-p.ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (p *Prober) once(t *probeTarget) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.paused || p.ctx.Err() != nil {
		return
	}
	s := probe(p.ctx, t.client, t.name, "http://"+t.addr+p.path)
	if p.ctx.Err() != nil && s.Status == 0 {
		return // cut off by Stop, not an answer of the target
	}
	p.mu.Lock()
	p.samples = append(p.samples, s)
	p.mu.Unlock()
}

// probe sends one GET and returns its sample.
func probe(ctx context.Context, c *http.Client, name, url string) Sample {
	start := time.Now()
	s := Sample{Target: name, At: start}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		s.Err = err.Error()
		return s
	}
	res, err := c.Do(req)
	if err != nil {
		s.Latency = time.Since(start)
		s.Err = err.Error()
		return s
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	s.Latency = time.Since(start)
	s.Status = res.StatusCode
	return s
}
