package cluster

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	wire "github.com/kongfb/kongfb/pkg/cluster"
)

// client is one connected DP.
type client struct {
	s    *Server
	conn *wire.Conn
	node wire.NodeInfo
	log  *slog.Logger
	// mail holds the newest payload not yet sent: a DP that is slow to
	// receive skips intermediate configurations and gets the latest (Kong
	// PR #6299 does the same on the DP side).
	mail chan *Payload
	// sentHash is the hash of the last configuration sent (writer only).
	sentHash string
	// plugins is what the DP announced in basic_info, parsed once.
	plugins *wire.PluginSet
}

func (c *client) deliver(p *Payload) {
	for {
		select {
		case c.mail <- p:
			return
		default:
		}
		select {
		case <-c.mail: // drop the stale one
		default:
		}
	}
}

// handleOutlet serves one DP on /v1/outlet for the lifetime of its
// connection.
func (s *Server) handleOutlet(w http.ResponseWriter, r *http.Request) {
	s.conns.Add(1)
	defer s.conns.Done()
	s.mu.Lock()
	parent := s.ctx
	s.mu.Unlock()

	conn, node, err := wire.Accept(w, r, &wire.AcceptOptions{
		MaxPayload: s.opts.MaxPayload,
		PingWait:   s.opts.PingWait,
		Logger:     s.log,
	})
	if err != nil {
		s.log.Error("[clustering] "+err.Error(), "id", node.ID, "host", node.Hostname, "ip", node.IP, "version", node.Version)
		return
	}
	log := s.log.With("id", node.ID, "host", node.Hostname, "ip", node.IP, "version", node.Version)

	if status, err := wire.CheckCompatibility(s.opts.Version, node.Version); err != nil {
		// Kong records the refused DP (so operators see it in
		// /clustering/data-planes) and closes the connection.
		var ie *wire.IncompatibleError
		if errors.As(err, &ie) {
			status = ie.Status
		}
		s.reg.connected(node, status, false)
		log.Error("[clustering] " + err.Error())
		_ = conn.CloseWithReason(err.Error())
		return
	}
	logConnectNotes(parent, log, wire.ConnectNotes(s.opts.Version, node.Version, s.opts.Plugins, node.BasicInfo.Plugins))

	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	c := &client{s: s, conn: conn, node: node, log: log, mail: make(chan *Payload, 1), plugins: wire.NewPluginSet(node.BasicInfo.Plugins)}
	s.reg.connected(node, wire.SyncStatusUnknown, true)
	// Registering and reading the payload under one lock: either this DP
	// sees the newest payload here, or install() sees this DP.
	s.mu.Lock()
	s.clients[c] = struct{}{}
	p := s.payload
	n := len(s.clients)
	s.mu.Unlock()
	log.Info("[clustering] data plane connected", "data_planes", n)
	if p != nil {
		c.deliver(p)
	} else {
		log.Warn("[clustering] unable to send initial configuration to data plane: no configuration could be exported yet; " +
			"it is sent as soon as an export succeeds")
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}

	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writeLoop(ctx)
	}()
	err = conn.ReadLoop(ctx, func(hash string) { s.reg.pinged(node.ID, hash) })
	cancel()
	<-writerDone

	s.mu.Lock()
	delete(s.clients, c)
	n = len(s.clients)
	s.mu.Unlock()
	s.reg.disconnected(node.ID)
	switch {
	case err == nil:
		log.Info("[clustering] data plane closed the connection", "data_planes", n)
	case parent.Err() != nil:
		log.Debug("[clustering] data plane connection closed: control plane shutting down")
	default:
		log.Warn("[clustering] data plane connection closed: "+err.Error(), "data_planes", n)
	}
}

// writeLoop sends each delivered payload to the DP until ctx ends.
func (c *client) writeLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-c.mail:
			if err := c.send(ctx, p); err != nil {
				if ctx.Err() == nil {
					c.log.Error("[clustering] "+err.Error(), "config_hash", p.Hash)
				}
				// The read loop notices the closed connection and cleans up.
				_ = c.conn.CloseNow()
				return
			}
		}
	}
}

func (c *client) send(ctx context.Context, p *Payload) error {
	s := c.s
	if p.Hash == c.sentHash {
		// The DP already has this configuration (e.g. a plugin was added
		// and removed again while it was skipped): it is in sync.
		s.reg.setStatus(c.node.ID, wire.SyncStatusNormal)
		return nil
	}
	if status, err := s.plugins.CheckConfigured(c.plugins, p.Plugins); err != nil {
		// Kong skips this configuration for this DP but keeps it connected:
		// it may get the next one.
		c.log.Warn("[clustering] unable to send updated configuration to data plane: "+err.Error(), "config_hash", p.Hash)
		s.reg.setStatus(c.node.ID, status)
		return nil
	}
	if err := c.conn.SendReconfigure(ctx, p.Frame); err != nil {
		return err
	}
	s.sends.Add(1)
	c.sentHash = p.Hash
	s.reg.setStatus(c.node.ID, wire.SyncStatusNormal)
	c.log.Debug("[clustering] configuration sent to data plane", "config_hash", p.Hash, "version", p.Version, "bytes", len(p.Frame))
	return nil
}

// logConnectNotes logs what Kong logs when a DP connects. Kong writes one
// WARN per plugin the DP lacks; a kongfb DP announces no plugins (its proxy
// runs none), which would be some 40 lines per connection, so missing
// plugins are listed in one line.
func logConnectNotes(ctx context.Context, log *slog.Logger, notes []wire.Note) {
	const suffix = " is missing from data plane"
	var missing []string
	for _, n := range notes {
		if name, ok := strings.CutSuffix(n.Message, suffix); ok {
			missing = append(missing, name)
			continue
		}
		log.Log(ctx, n.Level, "[clustering] "+n.Message)
	}
	switch {
	case len(missing) == 1:
		log.Warn("[clustering] " + missing[0] + suffix)
	case len(missing) > 1:
		log.Warn("[clustering] data plane lacks plugins the control plane has; configurations using them are not sent to it",
			"missing", len(missing), "plugins", strings.Join(missing, ", "))
	}
}
