package cli

import (
	"crypto/ecdsa"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kongfb/kongfb/pkg/cluster"
)

func init() { register(newCertCommand) }

// certGenOptions are the flags of `kongfb cert gen`.
type certGenOptions struct {
	Cert  string
	Key   string
	Days  int
	Force bool
}

// certGenResult is what `cert gen` reports (--output json|yaml).
type certGenResult struct {
	Cert      string    `json:"cert"`
	Key       string    `json:"key"`
	Subject   string    `json:"subject"`
	KeyType   string    `json:"key_type"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	Days      int       `json:"days"`
	SHA256    string    `json:"sha256"`
}

func newCertCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cert",
		Short: "Manage the hybrid-mode cluster certificate",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	o := certGenOptions{}
	gen := &cobra.Command{
		Use:   "gen",
		Short: "Generate a cluster certificate and key for cluster_mtls = shared",
		Long: `Generate the certificate and private key that the control plane and every
data plane share when cluster_mtls = shared, like 'kong hybrid gen_cert':
an ECDSA P-384 key and a self-signed certificate for CN=kong_clustering,
valid for --days days (3 years by default).

Both files are written atomically (temporary file, fsync, rename); the key is
readable by its owner only (0600), the certificate by everyone (0644).
Existing files are never overwritten unless --force is given.

Point cluster_cert and cluster_cert_key (KONG_CLUSTER_CERT,
KONG_CLUSTER_CERT_KEY) at the two files on the control plane and on every
data plane.`,
		Example: `  kongfb cert gen
  kongfb cert gen --cert /etc/kongfb/cluster.crt --key /etc/kongfb/cluster.key --days 365
  kongfb cert gen --force -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := a.printer()
			if err != nil {
				return err
			}
			res, err := runCertGen(o)
			if err != nil {
				return err
			}
			return p.Data(res, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "Successfully generated certificate/key pairs, they have been written to: '%s' and '%s'.\n"+
					"  subject:     %s\n  key:         %s (%s, mode 0600)\n  valid until: %s (%d days)\n  sha256:      %s\n",
					res.Cert, res.Key, res.Subject, res.KeyType, res.Key, res.NotAfter.Format(time.RFC3339), res.Days, res.SHA256)
				return err
			})
		},
	}
	f := gen.Flags()
	f.StringVar(&o.Cert, "cert", "cluster.crt", "certificate file to write")
	f.StringVar(&o.Key, "key", "cluster.key", "private key file to write")
	f.IntVarP(&o.Days, "days", "d", cluster.DefaultCertDays, "validity in days")
	f.BoolVar(&o.Force, "force", false, "overwrite existing files")
	cmd.AddCommand(gen)
	return cmd
}

// runCertGen generates the pair and writes both files, or neither when a
// check fails beforehand.
func runCertGen(o certGenOptions) (*certGenResult, error) {
	if o.Days < 1 {
		return nil, usageErrorf("--days must be at least 1, got %d", o.Days)
	}
	if strings.TrimSpace(o.Cert) == "" || strings.TrimSpace(o.Key) == "" {
		return nil, usageErrorf("--cert and --key must name files")
	}
	certPath, err := filepath.Abs(o.Cert)
	if err != nil {
		return nil, fmt.Errorf("cert gen: resolve %s: %w", o.Cert, err)
	}
	keyPath, err := filepath.Abs(o.Key)
	if err != nil {
		return nil, fmt.Errorf("cert gen: resolve %s: %w", o.Key, err)
	}
	if certPath == keyPath {
		return nil, usageErrorf("--cert and --key must be different files (both are %s)", certPath)
	}
	if !o.Force {
		for _, p := range []string{certPath, keyPath} {
			if _, err := os.Lstat(p); err == nil {
				return nil, fmt.Errorf("cert gen: %s already exists; will not overwrite it (use --force)", p)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("cert gen: check %s: %w", p, err)
			}
		}
	}
	for _, p := range []string{certPath, keyPath} {
		if fi, err := os.Stat(filepath.Dir(p)); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("cert gen: directory %s does not exist", filepath.Dir(p))
		}
	}

	certPEM, keyPEM, err := cluster.GenerateSharedCert(o.Days)
	if err != nil {
		return nil, fmt.Errorf("cert gen: %w", err)
	}
	certs, err := cluster.ParseCertsPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("cert gen: %w", err)
	}
	leaf := certs[0]
	keyType := "unknown"
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); ok {
		keyType = "ECDSA " + pub.Curve.Params().Name
	}

	// Stage both files first so that a failure leaves neither behind.
	keyTmp, err := stageFile(keyPath, keyPEM, 0o600)
	if err != nil {
		return nil, err
	}
	certTmp, err := stageFile(certPath, certPEM, 0o644)
	if err != nil {
		os.Remove(keyTmp)
		return nil, err
	}
	if err := commitFile(keyTmp, keyPath, o.Force); err != nil {
		os.Remove(keyTmp)
		os.Remove(certTmp)
		return nil, err
	}
	if err := commitFile(certTmp, certPath, o.Force); err != nil {
		os.Remove(certTmp)
		// The key alone is useless; take it back unless it replaced a file
		// the user asked to overwrite (that one is gone either way).
		if !o.Force {
			os.Remove(keyPath)
		}
		return nil, err
	}
	for _, d := range uniqueDirs(certPath, keyPath) {
		if err := syncDir(d); err != nil {
			return nil, fmt.Errorf("cert gen: sync directory %s: %w", d, err)
		}
	}
	return &certGenResult{
		Cert:      certPath,
		Key:       keyPath,
		Subject:   "CN=" + leaf.Subject.CommonName,
		KeyType:   keyType,
		NotBefore: leaf.NotBefore.UTC(),
		NotAfter:  leaf.NotAfter.UTC(),
		Days:      o.Days,
		SHA256:    cluster.CertDigest(leaf),
	}, nil
}

// stageFile writes data to a synced temporary file next to path with mode
// and returns its name.
func stageFile(path string, data []byte, mode os.FileMode) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("cert gen: create temporary file for %s: %w", path, err)
	}
	tmp := f.Name()
	fail := func(err error) (string, error) {
		f.Close()
		os.Remove(tmp)
		return "", fmt.Errorf("cert gen: write %s: %w", path, err)
	}
	// Chmod is not subject to the umask, so the mode is exact; CreateTemp
	// already made it 0600, so the key is never readable by others.
	if err := f.Chmod(mode); err != nil {
		return fail(err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("cert gen: write %s: %w", path, err)
	}
	return tmp, nil
}

// commitFile moves tmp to path. Without force it links instead of renaming,
// which fails if path appeared since the check: no file is ever clobbered.
func commitFile(tmp, path string, force bool) error {
	if force {
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("cert gen: write %s: %w", path, err)
		}
		return nil
	}
	err := os.Link(tmp, path)
	if err == nil {
		os.Remove(tmp)
		return nil
	}
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("cert gen: %s already exists; will not overwrite it (use --force)", path)
	}
	// Filesystems without hard links: re-check, then rename.
	if _, serr := os.Lstat(path); serr == nil {
		return fmt.Errorf("cert gen: %s already exists; will not overwrite it (use --force)", path)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("cert gen: write %s: %w", path, err)
	}
	return nil
}

func uniqueDirs(paths ...string) []string {
	var out []string
	seen := map[string]bool{}
	for _, p := range paths {
		d := filepath.Dir(p)
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out
}

// syncDir makes the renames durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
