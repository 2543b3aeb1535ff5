package upstreamtls

import (
	"fmt"
	"os"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/caddyserver/caddy/v2/modules/caddypki"
	"github.com/spf13/cobra"
)

// defaultBackendCertLifetime is how long a `caddy lb-cert` certificate is
// valid unless --lifetime says otherwise: long enough to be run from a
// deployment or a monthly timer, short enough that a leaked key expires.
const defaultBackendCertLifetime = 90 * 24 * time.Hour

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "lb-cert",
		Usage: "--out <dir> (--san <name|ip>... | --export-root) [--ca <id>] [--lifetime <duration>] [--storage-dir <dir> | --config <path> [--adapter <name>]] [--force]",
		Short: "Issues a backend certificate from caddy-lb's internal CA",
		Long: `
Issues a TLS server certificate for a backend from the internal CA that
caddy-lb's "transport reencrypt" trusts (trust_internal), so the backend
can serve HTTPS that the load balancer verifies.

The CA is read from Caddy's storage, offline: the default storage, the
one in --config, or a file_system storage at --storage-dir. It must
exist already (caddy-lb creates it when it first runs with reencrypt).
Run this where that storage is, as the user Caddy runs as.

Written to --out (created with mode 0700), refusing to overwrite unless
--force:
  key.pem    the private key (ECDSA P-256, PKCS#8), mode 0600
  cert.pem   the certificate
  chain.pem  the certificate followed by the CA certificate: what the
             backend serves
  ca.pem     the CA's root: what a backend that requires client
             certificates trusts to accept the load balancer

The certificate is signed by the CA's root, not by its intermediate,
because intermediates live 7 days and a backend certificate outlives
them. It names every --san: DNS names and IP addresses (an upstream
addressed by IP is verified against its IP SAN).

With --export-root, it writes the CA's root instead, for the other nodes
of a fleet that do not share this storage, so that they issue client
certificates and trust backend certificates of the same root:
  root.crt   the root certificate
  root.key   its private key, mode 0600: copy it as a secret
Each of those nodes then names them in its global options:
  pki {
    ca local {
      root {
        cert /etc/caddylb/ca/root.crt
        key  /etc/caddylb/ca/root.key
      }
    }
  }

Example:
  caddy lb-cert --out /etc/app/tls --san app1.internal --san 10.0.0.5
  caddy lb-cert --out /secure/ca --export-root`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().String("ca", caddypki.DefaultCAID, "The ID of the CA in the pki app")
			cmd.Flags().String("out", "", "Directory to write key.pem, cert.pem, chain.pem and ca.pem to (required)")
			cmd.Flags().StringArray("san", nil, "A DNS name or IP address the certificate names (repeat; at least one)")
			cmd.Flags().Duration("lifetime", defaultBackendCertLifetime, "How long the certificate is valid")
			cmd.Flags().String("storage-dir", "", "Caddy's file_system storage root holding the CA (default: Caddy's data directory)")
			cmd.Flags().StringP("config", "c", "", "Caddy config to take the storage and CA settings from")
			cmd.Flags().StringP("adapter", "a", "", "Name of the config adapter for --config")
			cmd.Flags().Bool("force", false, "Overwrite files already in --out")
			cmd.Flags().Bool("export-root", false, "Write the CA's root certificate and key (root.crt, root.key) instead of a backend certificate")
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdLBCert)
		},
	})
}

func cmdLBCert(fl caddycmd.Flags) (int, error) {
	sans, err := fl.GetStringArray("san")
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	opts := backendCertOptions{
		caID:       fl.String("ca"),
		outDir:     fl.String("out"),
		sans:       sans,
		lifetime:   fl.Duration("lifetime"),
		storageDir: fl.String("storage-dir"),
		configFile: fl.String("config"),
		adapter:    fl.String("adapter"),
		force:      fl.Bool("force"),
	}
	if fl.Bool("export-root") {
		if len(sans) > 0 {
			return caddy.ExitCodeFailedStartup, fmt.Errorf("lb-cert: --export-root writes the root only; drop --san")
		}
		cert, key, fp, err := exportRoot(opts)
		if err != nil {
			return caddy.ExitCodeFailedStartup, fmt.Errorf("lb-cert: %w", err)
		}
		fmt.Fprintf(os.Stdout, "root %s (sha256 %s)\nkey %s\n", cert, fp, key)
		return caddy.ExitCodeSuccess, nil
	}
	written, err := issueBackendCert(opts)
	if err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("lb-cert: %w", err)
	}
	fmt.Fprintf(os.Stdout, "issued %s (expires %s, pin_spki %s)\n", written.cert, written.notAfter.Format(time.RFC3339), written.pin)
	fmt.Fprintf(os.Stdout, "key %s\nchain %s\nca %s\n", written.key, written.chain, written.ca)
	return caddy.ExitCodeSuccess, nil
}
