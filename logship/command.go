package logship

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/caddylb/caddylb/assetcdn/objectstore"
	"github.com/caddylb/caddylb/internal/quantity"
	"github.com/caddylb/caddylb/logship/logquery"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "lb-logs",
		Short: "Reads the logs every node shipped to an asset store",
		Long: `
Commands for the logs that ` + "`log { output s3 }`" + ` writers and ` + "`ship_logs`" + ` file
shippers put in an asset store. The store is loaded from the config file
offline; no running Caddy is needed.
`,
		CobraFunc: func(cmd *cobra.Command) {
			search := &cobra.Command{
				Use:   "search --config <path> [--store <name>] --prefix <p> [--since <d|time>] [--until <time>] [--host <h>]... [--name <log>] [--where '<field><op><value>']... [--follow] [--format json|text]",
				Short: "Prints the shipped log lines of a time window, every node's, in time order",
				Long: `
Lists the objects of the time window by key (not the whole bucket),
streams and decompresses them, merges every node's lines into one stream
in timestamp order ("ts"), and prints them: as shipped (--format json,
the default) or as one readable line each (--format text).

--since and --until take a duration back from now (90s, 15m, 1h, 2d) or
a time (2026-12-01T07:00:00Z, 2026-12-01T07:00, 2026-12-01).

--where keeps the lines where <field><op><value> holds; repeat it for
AND. <field> is a dotted path (status, request.host,
request.headers.User-Agent.0); <op> is = != >= <= > < or ~ (contains).
Numbers compare as numbers, strings as text; a missing field matches
only !=. Examples: 'status>=500', 'request.host=shop.example.com',
'request.uri~/checkout', 'msg~timeout'.

--follow keeps printing what the nodes ship next, like tail -f over the
fleet, until interrupted; lines arrive as their files are uploaded
(about every roll_interval).

An object that cannot be read (corrupt, truncated, not gzip) is reported
on stderr with its key and skipped; the search goes on, and exits with
status 2 at the end (0 when everything was read, 1 on an error that
stops it).
`,
				Args: cobra.NoArgs,
				RunE: caddycmd.WrapCommandFuncForCobra(cmdLogsSearch),
			}
			f := search.Flags()
			f.StringP("config", "c", "", "Configuration file declaring the asset store (required)")
			f.StringP("adapter", "a", "", "Name of config adapter")
			f.String("store", "", "Name of the asset_store (default: the only one declared)")
			f.String("prefix", DefaultPrefix, "The prefix the logs were shipped under")
			f.String("key", DefaultKey, "The writers' key template")
			f.String("since", "1h", "Start of the window: a duration back from now, or a time")
			f.String("until", "", "End of the window (default: now)")
			f.StringArray("host", nil, "Only this node (repeatable)")
			f.String("name", "", "Only this log name (the writers' name)")
			f.StringArray("where", nil, "Keep lines where <field><op><value> (repeatable: AND)")
			f.Bool("follow", false, "Keep printing what is shipped next")
			f.String("format", "json", "json (as shipped) or text")
			f.Duration("lookback", time.Hour, "How long before --since a shipped file may have started (the longest roll_interval)")
			cmd.AddCommand(search)
		},
	})
}

// cmdLogsSearch runs `caddy lb-logs search`.
func cmdLogsSearch(fl caddycmd.Flags) (int, error) {
	configFile := fl.String("config")
	if configFile == "" {
		return caddy.ExitCodeFailedStartup, errors.New("--config is required: the config that declares the asset store")
	}
	now := time.Now()
	opts := SearchOptions{
		Prefix: fl.String("prefix"), Key: fl.String("key"), Name: fl.String("name"),
		Format: fl.String("format"), Follow: fl.Bool("follow"),
	}
	var err error
	if opts.Since, err = parseWhen(fl.String("since"), now); err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("--since: %v", err)
	}
	if u := fl.String("until"); u != "" {
		if opts.Until, err = parseWhen(u, now); err != nil {
			return caddy.ExitCodeFailedStartup, fmt.Errorf("--until: %v", err)
		}
	}
	if opts.Hosts, err = fl.GetStringArray("host"); err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	if opts.Lookback, err = fl.GetDuration("lookback"); err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	wheres, err := fl.GetStringArray("where")
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	for _, w := range wheres {
		c, err := logquery.ParseWhere(w)
		if err != nil {
			return caddy.ExitCodeFailedStartup, err
		}
		opts.Where = append(opts.Where, c)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cctx, cancel := caddy.NewContext(caddy.Context{Context: ctx})
	defer cancel()
	store, err := objectstore.LoadFromConfig(cctx, configFile, fl.String("adapter"), fl.String("store"))
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	stats, err := Search(ctx, store, opts, os.Stdout, os.Stderr)
	if err != nil {
		return 1, err
	}
	if stats.Objects == 0 {
		fmt.Fprintf(os.Stderr, "lb-logs: no shipped files under %q started between %s and %s\n", opts.Prefix,
			opts.Since.Add(-opts.Lookback).UTC().Format(time.RFC3339), cmp.Or(opts.Until, now).UTC().Format(time.RFC3339))
	}
	if stats.Skipped > 0 {
		// Everything readable was printed; the status says not all was.
		fmt.Fprintf(os.Stderr, "lb-logs: %d of %d objects could not be read whole (see above)\n", stats.Skipped, stats.Objects)
		return 2, nil
	}
	return 0, nil
}

// parseWhen reads a --since or --until: a duration back from now
// (quantity.ParseDuration, which takes "2d"), or a time in RFC 3339 or
// a shorter form of it (UTC unless it names a zone).
func parseWhen(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if d, err := quantity.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("%q: a duration back from now must not be negative", s)
		}
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q: want a duration (15m, 1h, 2d) or a time (2026-12-01T07:00:00Z, 2026-12-01 07:00, 2026-12-01)", s)
}
