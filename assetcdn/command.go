package assetcdn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/caddylb/caddylb/assetcdn/objectstore"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "assets",
		Short: "Uploads built static assets to an asset store",
		Long: `
Commands for the object stores declared with the asset_store global option.
They load the stores from the config file offline; no running Caddy is needed.
`,
		CobraFunc: func(cmd *cobra.Command) {
			sync := &cobra.Command{
				Use:   "sync --config <path> [--store <name>] [--prefix <key prefix>] [--manifest <path>] [--dry-run] <build dir>",
				Short: "Uploads a build directory with fingerprinted names and a manifest",
				Long: `
Uploads every file of the build directory to the asset store under a
fingerprinted name (logo.png -> logo.3f2a9c1b2d4e.png) with
Cache-Control: public, max-age=31536000, immutable, then writes a manifest
that maps each path to its uploaded name (<prefix><manifest>, no-cache).
The asset_url template function reads it.

Files that Vite or webpack-manifest-plugin already fingerprinted and listed
in their manifest keep their names, and the tool's entries are merged into
the manifest. Files already stored with the same size and sha256 are
skipped, so running it twice uploads nothing the second time. Nothing is
ever deleted.

--config is the Caddyfile or JSON config declaring the store; --store names
it (default: the only one declared).
`,
				Args: cobra.ExactArgs(1),
				RunE: caddycmd.WrapCommandFuncForCobra(cmdAssetsSync),
			}
			sync.Flags().StringP("config", "c", "", "Configuration file declaring the asset store (required)")
			sync.Flags().StringP("adapter", "a", "", "Name of config adapter")
			sync.Flags().String("store", "", "Name of the asset_store (default: the only one declared)")
			sync.Flags().String("prefix", "", "Key prefix to upload under, e.g. assets/")
			sync.Flags().String("manifest", "manifest.json", "Path of the manifest under the prefix")
			sync.Flags().Bool("dry-run", false, "Show what would be uploaded without uploading")
			sync.Flags().Int("concurrency", 4, "Uploads in flight at once")
			cmd.AddCommand(sync)
		},
	})
}

// cmdAssetsSync runs `caddy assets sync`.
func cmdAssetsSync(fl caddycmd.Flags) (int, error) {
	configFile := fl.String("config")
	if configFile == "" {
		return caddy.ExitCodeFailedStartup, errors.New("--config is required: the config that declares the asset store")
	}
	dir := fl.Arg(0)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	cctx, cancel := caddy.NewContext(caddy.Context{Context: ctx})
	defer cancel() // cleans up the store's client
	store, err := objectstore.LoadFromConfig(cctx, configFile, fl.String("adapter"), fl.String("store"))
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	opts := SyncOptions{
		Prefix:      fl.String("prefix"),
		Manifest:    fl.String("manifest"),
		DryRun:      fl.Bool("dry-run"),
		Concurrency: fl.Int("concurrency"),
	}
	report, err := Sync(cctx, store, dir, opts)
	printSyncReport(os.Stdout, report, opts.DryRun)
	if err != nil {
		return caddy.ExitCodeFailedQuit, fmt.Errorf("syncing %s: %w", dir, err)
	}
	return caddy.ExitCodeSuccess, nil
}

// printSyncReport writes the counts for the person running the command.
func printSyncReport(w io.Writer, r SyncReport, dryRun bool) {
	verb := "uploaded"
	if dryRun {
		verb = "would upload"
	}
	fmt.Fprintf(w, "%s %d files (%s), skipped %d unchanged (%s)\n",
		verb, r.Uploaded, humanize.IBytes(uint64(r.UploadedBytes)), r.Skipped, humanize.IBytes(uint64(r.SkippedBytes)))
	state := "unchanged"
	if r.ManifestUploaded {
		state = verb
	}
	fmt.Fprintf(w, "manifest %s: %d entries, %s\n", r.ManifestKey, r.ManifestEntries, state)
}
