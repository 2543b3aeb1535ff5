package upstreamtls

import (
	"strings"

	"github.com/caddylb/caddylb/internal/quantity"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

// UnmarshalCaddyfile sets up the transport from Caddyfile tokens. Syntax:
//
//	transport reencrypt {
//		trust_internal [<ca id>]
//		client_cert internal [<ca id>]
//		client_cert_lifetime <duration>
//		pin_spki <base64 sha256>...
//		verify_name <upstream host:port> <name>
//		# plus everything `transport http` accepts
//	}
//
// CA ids default to `local`. With none of trust_internal, pin_spki and
// tls_trust_pool, trust_internal local is assumed. Every other line goes
// to Caddy's HTTP transport, in its order.
func (r *Reencrypt) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // transport name
	name := d.Token()
	if d.NextArg() {
		return d.Errf("transport reencrypt takes its options in a block, got argument %q", d.Val())
	}
	if r.TLS == nil {
		r.TLS = new(reverseproxy.TLSConfig) // TLS always: http:// upstreams are refused
	}
	var rest []caddyfile.Token
	for d.NextBlock(0) {
		handled, err := r.unmarshalOwnOption(d)
		if err != nil {
			return err
		}
		if !handled {
			rest = append(rest, d.NextSegment()...)
		}
	}
	return r.unmarshalHTTPOptions(name, rest)
}

// unmarshalHTTPOptions hands the lines reencrypt does not know to Caddy's
// HTTP transport parser, as a block of their own: `<name> {`, the lines
// with their original positions, and `}` on a line after them.
func (r *Reencrypt) unmarshalHTTPOptions(name caddyfile.Token, rest []caddyfile.Token) error {
	if len(rest) == 0 {
		return nil
	}
	last := rest[len(rest)-1]
	open, closing := name, last
	open.Text = "{"
	closing.Text = "}"
	closing.Line = last.Line + 1 + strings.Count(last.Text, "\n")
	tokens := make([]caddyfile.Token, 0, len(rest)+3)
	tokens = append(tokens, name, open)
	tokens = append(tokens, rest...)
	tokens = append(tokens, closing)
	return r.HTTPTransport.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens))
}

// unmarshalOwnOption parses the option at d if it is reencrypt's own.
func (r *Reencrypt) unmarshalOwnOption(d *caddyfile.Dispenser) (bool, error) {
	switch d.Val() {
	case "trust_internal":
		id, err := optionalCAID(d)
		if err != nil {
			return true, err
		}
		r.TrustInternal = id
	case "client_cert":
		if !d.NextArg() || d.Val() != "internal" {
			return true, d.Err("client_cert takes the source of the certificate: client_cert internal [<ca id>]")
		}
		id, err := optionalCAID(d)
		if err != nil {
			return true, err
		}
		r.ClientCertInternal = id
	case "client_cert_lifetime":
		if !d.NextArg() {
			return true, d.ArgErr()
		}
		dur, err := quantity.ParseDurationOrDefault(d.Val())
		if err != nil {
			return true, d.Errf("client_cert_lifetime: %v", err)
		}
		if d.NextArg() {
			return true, d.ArgErr()
		}
		r.ClientCertLifetime = caddy.Duration(dur)
	case "pin_spki":
		return true, r.unmarshalPins(d)
	case "verify_name":
		return true, r.unmarshalVerifyName(d)
	default:
		return false, nil
	}
	return true, nil
}

func (r *Reencrypt) unmarshalPins(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.Err("pin_spki needs at least one base64 SHA-256 of a public key")
	}
	for _, arg := range args {
		if _, err := parsePin(arg); err != nil {
			return d.Err(err.Error())
		}
	}
	r.PinSPKI = append(r.PinSPKI, args...)
	return nil
}

func (r *Reencrypt) unmarshalVerifyName(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) != 2 {
		return d.Err("verify_name takes an upstream and a name: verify_name <host:port> <name>")
	}
	if r.VerifyNames == nil {
		r.VerifyNames = map[string]string{}
	}
	if _, dup := r.VerifyNames[args[0]]; dup {
		return d.Errf("verify_name %s is given twice", args[0])
	}
	r.VerifyNames[args[0]] = args[1]
	return nil
}

// optionalCAID reads an optional CA id argument; `local` when absent.
func optionalCAID(d *caddyfile.Dispenser) (string, error) {
	opt := d.Val()
	id := "local"
	if d.NextArg() {
		id = d.Val()
	}
	if d.NextArg() {
		return "", d.Errf("%s takes at most one CA id", opt)
	}
	return id, nil
}
