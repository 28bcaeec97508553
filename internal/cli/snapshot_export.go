package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kongfb/kongfb/internal/snapshotops"
	"github.com/kongfb/kongfb/pkg/config"
	"github.com/kongfb/kongfb/pkg/snapshot"
)

func newSnapshotExportCommand(a *app) *cobra.Command {
	var sf snapshotFlags
	var fromFile, fromCP, adminToken, version, compression, nodeID string
	var plaintext bool
	cmd := &cobra.Command{
		Use:   "export --storage URL (--from-file FILE | --from-cp http://ADMIN)",
		Short: "Write a new history snapshot (and Kong's config.json) from a file or a running CP",
		Long: `Write a configuration to the fallback storage the way the exporter of
'kongfb serve dp/cp --export' does, by hand: a new history snapshot
<version>/snapshots/<time>-<hash>-<sha>.snap, encrypted, signed and compressed
with the same --snapshot-* options, and Kong's plain <version>/config.json when
the snapshot is not encrypted (or with --kong-compatible-plaintext).

The configuration comes from --from-file (decK kong.yaml, or a Kong
config.json export; "-" reads standard input) or from --from-cp, a running
control plane's Admin API: GET /config, which kongfb's control plane serves
(Kong serves it only in DB-less mode; for Kong with a database, export with
'deck gateway dump' and use --from-file). It is validated first; an invalid or
empty configuration writes nothing.

A history object is never overwritten (If-None-Match: *). Its capture time is
now, but always after the newest snapshot of the version, so it sorts as the
newest. The manifest records term 0 (not elected) and --node-id. Kong's
config.json is replaced only if nobody changed it since it was read (If-Match).

Exit codes: 0 written, 1 invalid configuration, CP or storage error,
2 bad usage.`,
		Example: `  # a decK file, signed and encrypted like the exporters' snapshots
  kongfb snapshot export --storage s3://kong-backup/kong --from-file kong.yaml \
    --snapshot-signing-key ops-signing.key --snapshot-recipient age1...

  # what a running kongfb control plane serves now
  KONG_ADMIN_TOKEN=s3cr3t kongfb snapshot export --storage file:///var/lib/kongfb/fallback \
    --from-cp http://127.0.0.1:8001

  # for Kong EE data planes of an exact version
  kongfb snapshot export --storage s3://kong-backup/kong --from-file kong.yaml --gateway-version 3.9.1.2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := kongEnvDefaults(a, cmd, append([][2]string{{"admin-token", "KONG_ADMIN_TOKEN"}}, snapshotEnv...)); err != nil {
				return err
			}
			p, err := a.printer()
			if err != nil {
				return err
			}
			if (fromFile == "") == (fromCP == "") {
				return usageErrorf("give one of --from-file FILE or --from-cp http://ADMIN")
			}
			opts, err := sf.writeOptions()
			if err != nil {
				return err
			}
			switch c := snapshot.Compression(strings.ToLower(compression)); c {
			case snapshot.CompressionZstd, snapshot.CompressionGzip, snapshot.CompressionNone:
				opts.Compression = c
			default:
				return usageErrorf("--compression %q: want zstd, gzip or none", compression)
			}
			opts.Version, opts.NodeID = strings.TrimSpace(version), nodeID
			ctx := cmdContext(cmd)
			var cfg *config.Config
			source := fromFile
			if fromFile != "" {
				data, err := readConfigInput(fromFile, a.streams.In)
				if err != nil {
					return failure(err)
				}
				if cfg, err = config.Parse(data, configInputName(fromFile)); err != nil {
					return failure(err) // names the file, entity and field
				}
				source = configDisplayName(fromFile)
			} else {
				if !strings.HasPrefix(fromCP, "http://") && !strings.HasPrefix(fromCP, "https://") {
					return usageErrorf("--from-cp %q: want the Admin API's URL, http://host:port", fromCP)
				}
				if cfg, _, err = (snapshotops.Admin{URL: fromCP, Token: adminToken}).GetConfig(ctx); err != nil {
					return failure(err)
				}
				source = strings.TrimRight(fromCP, "/") + "/config"
			}
			st, err := sf.openStore(ctx, true, true)
			if err != nil {
				return err
			}
			defer st.Close()
			res, err := snapshotops.Export(ctx, st, cfg, snapshotops.ExportOptions{Snapshot: opts, KongCompatiblePlaintext: plaintext})
			if res == nil && err != nil {
				if errors.Is(err, snapshot.ErrEmptyConfig) {
					err = fmt.Errorf("%s: %w", source, err)
				}
				return failure(err)
			}
			perr := p.Data(res, func(w io.Writer) error {
				fmt.Fprintf(w, "wrote %s (%d bytes) from %s\n", res.Key, res.Size, source)
				fmt.Fprintf(w, "config_hash: %s\nentities:    %s\n", res.ConfigHash, entitiesText(res.Entities))
				fmt.Fprintf(w, "encrypted:   %v\nsigned:      %v\n", res.Encrypted, res.Signed)
				switch {
				case res.KongObject != "":
					fmt.Fprintf(w, "wrote %s (Kong's plain config.json)\n", res.KongObject)
				case res.KongObjectSkipped != "":
					fmt.Fprintf(w, "Kong's config.json not written: %s\n", res.KongObjectSkipped)
				}
				return nil
			})
			if err != nil {
				return failure(err)
			}
			return perr
		},
	}
	f := cmd.Flags()
	sf.addStorage(f, true)
	f.StringVar(&fromFile, "from-file", "", `configuration file: decK kong.yaml or Kong config.json ("-" = standard input)`)
	f.StringVar(&fromCP, "from-cp", "", "a control plane's Admin API URL to export from (GET /config), e.g. http://127.0.0.1:8001")
	f.StringVar(&adminToken, "admin-token", "", "Kong-Admin-Token for --from-cp; prefer the environment variable [KONG_ADMIN_TOKEN]")
	sf.addWrite(f)
	f.BoolVar(&plaintext, "kong-compatible-plaintext", false, "also write Kong's plain <version>/config.json when the snapshot is encrypted (it is always written when it is not)")
	f.StringVar(&version, "gateway-version", config.KongVersion, "version directory to write under: the exact version Kong EE importers report (e.g. 3.9.1.2)")
	f.StringVar(&compression, "compression", string(snapshot.CompressionZstd), "payload compression: zstd, gzip or none")
	f.StringVar(&nodeID, "node-id", "", "node id recorded in the manifest and as Kong's uploader (default: the host name)")
	f.StringVar(&sf.fo.ExportS3Config, "export-s3-config", "", `extra S3 PutObject parameters as JSON, e.g. {"ServerSideEncryption":"aws:kms"} [KONG_CLUSTER_FALLBACK_EXPORT_S3_CONFIG]`)
	return cmd
}
