package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kongfb/kongfb/internal/snapshotops"
	"github.com/kongfb/kongfb/pkg/snapshot"
	"github.com/kongfb/kongfb/pkg/storage"
)

func newSnapshotEncryptCommand(a *app) *cobra.Command { return newSnapshotRewrapCommand(a, "encrypt") }
func newSnapshotDecryptCommand(a *app) *cobra.Command { return newSnapshotRewrapCommand(a, "decrypt") }

func newSnapshotRewrapCommand(a *app, op string) *cobra.Command {
	var sf snapshotFlags
	var out string
	var force bool
	cmd := &cobra.Command{
		Use: op + " (KEY | FILE) [--out FILE]",
		Long: `Write a ` + map[string]string{"encrypt": "re-encrypted", "decrypt": "decrypted"}[op] + ` copy of a kongfb snapshot (docs/SNAPSHOT-FORMAT.md §4).
The source is verified fully first (checksums, signature against
--snapshot-trusted-key, decryption with --snapshot-identity-file or
--snapshot-passphrase-file, config). The compressed config inside is kept as
it is; the new manifest keeps the source's created_at, node, term and config
hash and records the operation in derived_from.

The source is never modified. The copy is a new history object next to its
source (same time and config hash, another payload digest; created with
If-None-Match) or, with --out, a new file (atomically, mode 0600; an existing
file is replaced only with --force). A local FILE source needs --out or
--storage.

The source's signature cannot carry over (it covered the old manifest): the
copy is signed with --snapshot-signing-key, or left unsigned — readers that
pin signer keys then refuse it, so pin the operator's key too.

Exit codes: 0 written, 1 the source does not verify or cannot be read, the
destination exists, 2 bad usage.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := kongEnvDefaults(a, cmd, snapshotEnv); err != nil {
				return err
			}
			p, err := a.printer()
			if err != nil {
				return err
			}
			vopts, err := sf.verifyOptions()
			if err != nil {
				return err
			}
			wopts, err := sf.writeOptions()
			if err != nil {
				return err
			}
			ro := snapshot.RewrapOptions{Verify: vopts, SigningKey: wopts.SigningKey}
			if op == "encrypt" {
				if !wopts.Encrypted() {
					return usageErrorf("give the new recipients: --snapshot-recipient, --snapshot-recipients-file or --snapshot-passphrase-file")
				}
				ro.Recipients, ro.Passphrase = wopts.Recipients, wopts.Passphrase
			}
			src := sf.source(args[0])
			ctx := cmdContext(cmd)
			var st storage.Store
			if needsStore(src) || (out == "" && strings.TrimSpace(sf.fo.Storage) != "") {
				s, err := sf.openStore(ctx, false, out == "")
				if err != nil {
					return err
				}
				defer s.Close()
				st = s
			} else if out == "" {
				return usageErrorf("%s is a local file: give --out FILE (or --storage to write the copy there)", args[0])
			}
			res, err := snapshotops.Rewrap(ctx, st, src, op, ro, out, force)
			if err != nil {
				return failure(err)
			}
			return p.Data(res, func(w io.Writer) error {
				dest := res.Key
				if res.File != "" {
					dest = res.File
				}
				fmt.Fprintf(w, "%sed %s -> %s (%d bytes)\n", op, res.Source, dest, res.Size)
				enc := "no"
				if res.Encrypted {
					enc = "age: " + strings.Join(res.Recipients, ", ")
				}
				signer := "no (readers that pin signer keys will refuse it)"
				if res.Signer != "" {
					signer = res.Signer
				}
				fmt.Fprintf(w, "config_hash: %s\nencrypted:   %s\nsigned:      %s\n", res.ConfigHash, enc, signer)
				return nil
			})
		},
	}
	f := cmd.Flags()
	sf.addStorage(f, false)
	f.StringVar(&out, "out", "", "write the copy to this file instead of a new storage object")
	f.BoolVar(&force, "force", false, "replace an existing --out file")
	sf.addRead(f)
	if op == "encrypt" {
		cmd.Short = "Re-encrypt a snapshot to new age recipients or a passphrase, as a new object"
		cmd.Example = `  # re-encrypt to a new ops key (rotation), signed by the operator key
  kongfb snapshot encrypt --storage s3://kong-backup/kong \
    3.9.1/snapshots/20250108T101530.123Z-2d15a1457e0d-3065a805.snap \
    --snapshot-identity-file old-ops.agekey --snapshot-recipient age1newkey... \
    --snapshot-signing-key operator.key

  # encrypt a plain snapshot file with a passphrase
  kongfb snapshot encrypt ./plain.snap --out ./sealed.snap --snapshot-passphrase-file pass.txt`
		sf.addWrite(f)
	} else {
		cmd.Short = "Write a decrypted copy of an encrypted snapshot, as a new object or file"
		cmd.Example = `  # a decrypted copy for inspection, as a local file
  kongfb snapshot decrypt --storage s3://kong-backup/kong \
    3.9.1/snapshots/20250108T101530.123Z-2d15a1457e0d-3065a805.snap \
    --snapshot-identity-file ops.agekey --out ./plain.snap`
		f.StringVar(&sf.fo.SigningKeyFile, "snapshot-signing-key", "", "ed25519 key file that signs the new snapshot")
	}
	return cmd
}
