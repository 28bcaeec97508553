// Package config is kongfb's model of a Kong configuration: the entities, the
// parsers for decK's kong.yaml and Kong's flattened config.json export, schema
// validation with Kong's error shapes, and Kong's hybrid-mode config hash.
//
// The typed entities serialise to JSON in the shape of Kong's hybrid export
// (`_format_version: "3.0"`, `_transform: false`): every field is present,
// unset fields are null, and foreign keys are bare id strings. The Admin API
// (internal/cp) converts foreign keys to Kong's `{"id": …}` form itself.
package config

// KongVersion is the Kong Gateway version kongfb is compatible with. It is
// what the Admin API reports and what a DP announces to its CP.
const KongVersion = "3.9.1"

// DefaultWorkspaceID is Kong's well-known id of the default workspace in
// declarative mode (kong/constants.lua).
const DefaultWorkspaceID = "0dc6f45b-8f8d-40d2-a504-473544ee190b"

// Collection names, in the topological order Kong exports them (parents first).
const (
	CollWorkspaces     = "workspaces"
	CollConsumers      = "consumers"
	CollCertificates   = "certificates"
	CollCACertificates = "ca_certificates"
	CollServices       = "services"
	CollRoutes         = "routes"
	CollSNIs           = "snis"
	CollUpstreams      = "upstreams"
	CollTargets        = "targets"
	CollPlugins        = "plugins"
)

// Workspace is a Kong workspace row. kongfb serves only the default workspace
// but keeps the rows so a round trip loses nothing.
type Workspace struct {
	ID        string         `json:"id"`
	Name      string         `json:"name"`
	Comment   *string        `json:"comment"`
	Config    map[string]any `json:"config"`
	Meta      map[string]any `json:"meta"`
	CreatedAt int64          `json:"created_at"`
	UpdatedAt int64          `json:"updated_at"`
}

// Service is Kong's `services` entity.
type Service struct {
	ID                string   `json:"id"`
	CreatedAt         int64    `json:"created_at"`
	UpdatedAt         int64    `json:"updated_at"`
	Name              *string  `json:"name"`
	Retries           int      `json:"retries"`
	Protocol          string   `json:"protocol"`
	Host              string   `json:"host"`
	Port              int      `json:"port"`
	Path              *string  `json:"path"`
	ConnectTimeout    int      `json:"connect_timeout"`
	WriteTimeout      int      `json:"write_timeout"`
	ReadTimeout       int      `json:"read_timeout"`
	Tags              []string `json:"tags"`
	ClientCertificate *string  `json:"client_certificate"`
	TLSVerify         *bool    `json:"tls_verify"`
	TLSVerifyDepth    *int     `json:"tls_verify_depth"`
	CACertificates    []string `json:"ca_certificates"`
	Enabled           bool     `json:"enabled"`
	WsID              string   `json:"ws_id,omitempty"`
}

// CIDRPort is an element of a route's `sources` / `destinations`.
type CIDRPort struct {
	IP   *string `json:"ip"`
	Port *int    `json:"port"`
}

// Route is Kong's `routes` entity (traditional_compatible fields).
type Route struct {
	ID                      string              `json:"id"`
	CreatedAt               int64               `json:"created_at"`
	UpdatedAt               int64               `json:"updated_at"`
	Name                    *string             `json:"name"`
	Protocols               []string            `json:"protocols"`
	Methods                 []string            `json:"methods"`
	Hosts                   []string            `json:"hosts"`
	Paths                   []string            `json:"paths"`
	Headers                 map[string][]string `json:"headers"`
	HTTPSRedirectStatusCode int                 `json:"https_redirect_status_code"`
	RegexPriority           int64               `json:"regex_priority"`
	StripPath               bool                `json:"strip_path"`
	PathHandling            string              `json:"path_handling"`
	PreserveHost            bool                `json:"preserve_host"`
	RequestBuffering        bool                `json:"request_buffering"`
	ResponseBuffering       bool                `json:"response_buffering"`
	SNIs                    []string            `json:"snis"`
	Sources                 []CIDRPort          `json:"sources"`
	Destinations            []CIDRPort          `json:"destinations"`
	Tags                    []string            `json:"tags"`
	Service                 *string             `json:"service"`
	WsID                    string              `json:"ws_id,omitempty"`
}

// Upstream is Kong's `upstreams` entity. Healthchecks are kept as the full
// record with Kong's defaults filled in; see HealthchecksOf for a typed view.
type Upstream struct {
	ID                     string         `json:"id"`
	CreatedAt              int64          `json:"created_at"`
	UpdatedAt              int64          `json:"updated_at"`
	Name                   string         `json:"name"`
	Algorithm              string         `json:"algorithm"`
	HashOn                 string         `json:"hash_on"`
	HashFallback           string         `json:"hash_fallback"`
	HashOnHeader           *string        `json:"hash_on_header"`
	HashFallbackHeader     *string        `json:"hash_fallback_header"`
	HashOnCookie           *string        `json:"hash_on_cookie"`
	HashOnCookiePath       string         `json:"hash_on_cookie_path"`
	HashOnQueryArg         *string        `json:"hash_on_query_arg"`
	HashFallbackQueryArg   *string        `json:"hash_fallback_query_arg"`
	HashOnURICapture       *string        `json:"hash_on_uri_capture"`
	HashFallbackURICapture *string        `json:"hash_fallback_uri_capture"`
	Slots                  int            `json:"slots"`
	Healthchecks           map[string]any `json:"healthchecks"`
	Tags                   []string       `json:"tags"`
	HostHeader             *string        `json:"host_header"`
	ClientCertificate      *string        `json:"client_certificate"`
	UseSrvName             bool           `json:"use_srv_name"`
	WsID                   string         `json:"ws_id,omitempty"`
}

// Target is Kong's `targets` entity. Its timestamps are float seconds with
// millisecond precision, unlike every other entity.
type Target struct {
	ID        string   `json:"id"`
	CreatedAt float64  `json:"created_at"`
	UpdatedAt float64  `json:"updated_at"`
	Upstream  string   `json:"upstream"`
	Target    string   `json:"target"`
	Weight    int      `json:"weight"`
	Tags      []string `json:"tags"`
	WsID      string   `json:"ws_id,omitempty"`
}

// Consumer is Kong's `consumers` entity.
type Consumer struct {
	ID        string   `json:"id"`
	CreatedAt int64    `json:"created_at"`
	UpdatedAt int64    `json:"updated_at"`
	Username  *string  `json:"username"`
	CustomID  *string  `json:"custom_id"`
	Tags      []string `json:"tags"`
	WsID      string   `json:"ws_id,omitempty"`
}

// Plugin is Kong's `plugins` entity. Config is plugin-specific and kept as
// the generic record it was given (with defaults once a plugin schema knows them).
type Plugin struct {
	ID           string         `json:"id"`
	CreatedAt    int64          `json:"created_at"`
	UpdatedAt    int64          `json:"updated_at"`
	Name         string         `json:"name"`
	InstanceName *string        `json:"instance_name"`
	Route        *string        `json:"route"`
	Service      *string        `json:"service"`
	Consumer     *string        `json:"consumer"`
	Config       map[string]any `json:"config"`
	Protocols    []string       `json:"protocols"`
	Enabled      bool           `json:"enabled"`
	Tags         []string       `json:"tags"`
	WsID         string         `json:"ws_id,omitempty"`
}

// Certificate is Kong's `certificates` entity.
type Certificate struct {
	ID        string   `json:"id"`
	CreatedAt int64    `json:"created_at"`
	UpdatedAt int64    `json:"updated_at"`
	Cert      string   `json:"cert"`
	Key       string   `json:"key"`
	CertAlt   *string  `json:"cert_alt"`
	KeyAlt    *string  `json:"key_alt"`
	Tags      []string `json:"tags"`
	WsID      string   `json:"ws_id,omitempty"`
}

// SNI is Kong's `snis` entity.
type SNI struct {
	ID          string   `json:"id"`
	CreatedAt   int64    `json:"created_at"`
	UpdatedAt   int64    `json:"updated_at"`
	Name        string   `json:"name"`
	Certificate string   `json:"certificate"`
	Tags        []string `json:"tags"`
	WsID        string   `json:"ws_id,omitempty"`
}

// CACertificate is Kong's `ca_certificates` entity.
type CACertificate struct {
	ID         string   `json:"id"`
	CreatedAt  int64    `json:"created_at"`
	UpdatedAt  int64    `json:"updated_at"`
	Cert       string   `json:"cert"`
	CertDigest *string  `json:"cert_digest"`
	Tags       []string `json:"tags"`
	WsID       string   `json:"ws_id,omitempty"`
}

// Config is a whole, flattened Kong configuration: what a DP serves, what a CP
// pushes and what a snapshot stores.
type Config struct {
	FormatVersion  string
	Workspaces     []*Workspace
	Services       []*Service
	Routes         []*Route
	Upstreams      []*Upstream
	Targets        []*Target
	Consumers      []*Consumer
	Plugins        []*Plugin
	Certificates   []*Certificate
	SNIs           []*SNI
	CACertificates []*CACertificate
	// Extra holds every collection kongfb does not interpret (keys, key_sets,
	// vaults, parameters, credentials, consumer_groups, …) verbatim, so that a
	// round trip through kongfb loses nothing.
	Extra map[string][]map[string]any

	// validated is set by Parse and FromEntities, which validate what they
	// build. Configs are treated as immutable once built, so a consumer that
	// must only ever see valid configs (the proxy engine) can skip a second
	// validation, which costs about as much as the parse itself.
	validated bool
}

// Validated reports whether c was built by Parse or FromEntities, which
// validate it completely. A Config assembled in code reports false; call
// Validate on it.
func (c *Config) Validated() bool { return c != nil && c.validated }
