package caddyfile_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// validate adapts a Caddyfile and provisions it as `caddy validate` does.
func validate(t *testing.T, text string) error {
	t.Helper()
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(text), nil)
	if err != nil {
		t.Fatalf("adapting: %v", err)
	}
	var cfg caddy.Config
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatalf("decoding the adapted config: %v", err)
	}
	return caddy.Validate(&cfg)
}

// TestStickyLearnCheckIsPerSite: app_cookie needs sticky_learn ahead of
// its reverse_proxy in the same site. Two sites on one server, the first
// with sticky_learn, the second without: the second is refused every
// time, named, whichever server or route Caddy provisions first. (The
// check once counted sticky_learn handlers per config and accepted this
// config in about 15 runs of 20; users of the second site were logged out
// right after logging in.)
func TestStickyLearnCheckIsPerSite(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sites   string
		wantErr string // "" means valid
	}{
		{"second site lacks sticky_learn", `
a.example.com {
	sticky_learn
	reverse_proxy 127.0.0.1:9001 {
		lb_policy sticky {
			app_cookie PHPSESSID
		}
	}
}
b.example.com {
	reverse_proxy 127.0.0.1:9002 {
		lb_policy sticky {
			app_cookie PHPSESSID
			namespace b
		}
	}
}`, "site b.example.com"},
		{"first site lacks it", `
a.example.com {
	reverse_proxy 127.0.0.1:9001 {
		lb_policy sticky {
			app_cookie PHPSESSID
		}
	}
}
b.example.com {
	sticky_learn
	reverse_proxy 127.0.0.1:9002 {
		lb_policy sticky {
			app_cookie PHPSESSID
			namespace b
		}
	}
}`, "site a.example.com"},
		{"servers on two ports", `
:8081 {
	sticky_learn
	reverse_proxy 127.0.0.1:9001 {
		lb_policy sticky {
			app_cookie PHPSESSID
		}
	}
}
:8082 {
	reverse_proxy 127.0.0.1:9002 {
		lb_policy sticky {
			app_cookie PHPSESSID
			namespace b
		}
	}
}`, ":8082"},
		{"sticky_learn in a sibling handle block", `
a.example.com {
	handle /login {
		sticky_learn
		respond "login"
	}
	handle {
		reverse_proxy 127.0.0.1:9001 {
			lb_policy sticky {
				app_cookie PHPSESSID
			}
		}
	}
}`, "site a.example.com"},
		{"site-level sticky_learn covers a proxy in a handle block", `
a.example.com {
	sticky_learn
	handle /api/* {
		reverse_proxy 127.0.0.1:9001 {
			lb_policy sticky {
				app_cookie PHPSESSID
			}
		}
	}
}`, ""},
		{"a named route invoked from a site that learns", `
&(app) {
	reverse_proxy 127.0.0.1:9001 {
		lb_policy sticky {
			app_cookie PHPSESSID
		}
	}
}
a.example.com {
	sticky_learn
	invoke app
}`, ""},
		// Provisioning cannot see which site invokes a named route: a
		// policy in one is accepted, and warns at run time.
		{"a named route in a server without sticky_learn", `
&(app) {
	reverse_proxy 127.0.0.1:9001 {
		lb_policy sticky {
			app_cookie PHPSESSID
		}
	}
}
a.example.com {
	invoke app
}`, ""},
		{"sticky_learn in one named route, the proxy in another", `
&(learn) {
	sticky_learn
}
&(app) {
	reverse_proxy 127.0.0.1:9001 {
		lb_policy sticky {
			app_cookie PHPSESSID
		}
	}
}
a.example.com {
	route {
		invoke learn
		invoke app
	}
}`, ""},
		{"error routes of a site without a host", `
:8081 {
	sticky_learn
	reverse_proxy 127.0.0.1:9001
	handle_errors {
		reverse_proxy 127.0.0.1:9002 {
			lb_policy sticky {
				app_cookie PHPSESSID
			}
		}
	}
}`, "error routes"},
		{"both sites learn", `
a.example.com {
	sticky_learn
	reverse_proxy 127.0.0.1:9001 {
		lb_policy sticky {
			app_cookie PHPSESSID
		}
	}
}
b.example.com {
	sticky_learn
	reverse_proxy 127.0.0.1:9002 {
		lb_policy sticky {
			app_cookie PHPSESSID
			namespace b
		}
	}
}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := "{\n\tadmin off\n\tskip_install_trust\n}\n" + tc.sites + "\n"
			// Servers and apps are provisioned in map order: repeat, so
			// an order-dependent check shows.
			for range 20 {
				err := validate(t, text)
				switch {
				case tc.wantErr == "" && err != nil:
					t.Fatalf("refused: %v", err)
				case tc.wantErr != "" && err == nil:
					t.Fatal("accepted")
				case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
					t.Fatalf("error %q does not name %q", err, tc.wantErr)
				case tc.wantErr != "" && !strings.Contains(err.Error(), "sticky_learn"):
					t.Fatalf("error %q does not say to add sticky_learn", err)
				}
			}
		})
	}
}

// TestClientIPWithASharedStoreNeedsASecret: client IP store keys are
// keyed hashes, and every node must use the same key.
func TestClientIPWithASharedStoreNeedsASecret(t *testing.T) {
	site := func(secret string) string {
		return `{
	admin off
	session_store shared memcached 127.0.0.1:1
}
:8081 {
	reverse_proxy 127.0.0.1:9001 {
		lb_policy sticky {
			client_ip
			store shared
			` + secret + `
		}
	}
}
`
	}
	if err := validate(t, site("")); err == nil || !strings.Contains(err.Error(), "needs `secret`") {
		t.Fatalf("client_ip on a shared store without a secret: %v", err)
	}
	if err := validate(t, site("secret 0123456789abcdef0123")); err != nil {
		t.Fatalf("with a secret: %v", err)
	}
}
