# caddy-lb developer tasks. `make test` is what CI runs (.ci/run).

GO ?= go
BIN := bin
CADDY := $(BIN)/caddy
BACKEND := $(BIN)/demo-backend

.PHONY: all build run deps test vet bench pgo fuzz clean

all: build

# The custom Caddy: stock modules plus every caddy-lb module, optimised
# with the CPU profile xcaddy/default.pgo (go build finds it on its own).
build:
	$(GO) build -o $(CADDY) ./xcaddy
	$(GO) build -o $(BACKEND) ./integration/demo/backend

# The demo of every capability: three demo backends (HTTP and, with
# certificates from `caddy lb-cert`, HTTPS) behind Caddy on
# https://localhost:8443, :8080 and :8081; the start message lists a URL per
# capability. Writes only to ./var; Ctrl-C stops everything.
run: build
	CADDY=$(CURDIR)/$(CADDY) BACKEND=$(CURDIR)/$(BACKEND) integration/demo/run.sh

# Servers the tests start for real. Debian's redis-server package may also
# start a system redis on 6379; the tests never use it (they start their own
# on free ports). php-cli's built-in server is the PHP application that
# asset_offload's bypass tests upload to. chromium runs the dashboard page in
# the browser tests.
deps:
	@missing=""; \
	for cmd in redis-server redis-sentinel memcached wrk php nginx haproxy chromium jq; do \
		command -v $$cmd >/dev/null 2>&1 || [ -x /usr/sbin/$$cmd ] || missing="$$missing $$cmd"; \
	done; \
	[ -x /usr/bin/time ] || missing="$$missing time"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
		$$sudo apt-get update && \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server redis-sentinel memcached wrk php-cli nginx haproxy chromium jq time; \
	fi
	@# Node.js runs a real Express app in the forwarded-header tests.
	@if ! command -v npm >/dev/null 2>&1; then \
		sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
		$$sudo apt-get update && \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm; \
	fi
	@[ -d integration/express/node_modules/express ] || \
		(cd integration/express && npm ci --no-audit --no-fund)
	@# Reloads under load: the kernel hands the connections queued on a closing
	@# listener to the new one (docs/tuning.md); the reload tests need it.
	@f=/proc/sys/net/ipv4/tcp_migrate_req; \
	if [ -f $$f ] && [ "$$(cat $$f)" = 0 ]; then \
		sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
		echo "setting net.ipv4.tcp_migrate_req=1"; \
		echo 1 | $$sudo tee $$f >/dev/null || echo "cannot set $$f: the reload tests will say so"; \
	fi
	@# --- Go tools the tests run. ---
	@# versitygw: the S3 server of the asset store tests. testproc finds it on
	@# PATH or where go install puts it (GOBIN, else the first GOPATH's bin).
	@gobin="$$($(GO) env GOBIN)"; [ -n "$$gobin" ] || gobin="$$($(GO) env GOPATH | cut -d: -f1)/bin"; \
	command -v versitygw >/dev/null 2>&1 || [ -x "$$gobin/versitygw" ] || \
		{ echo "installing versitygw v1.8.0 into $$gobin (about 2 minutes)"; \
		  $(GO) install github.com/versity/versitygw/cmd/versitygw@v1.8.0; }

# Files tests leave for a person to look at (the dashboard's screenshots)
# go to $(TEST_OUTPUT)/_artifacts/.
TEST_OUTPUT ?= $(CURDIR)/var/test-output
test: deps build
	mkdir -p $(TEST_OUTPUT)
	CADDYLB_BIN=$(CURDIR)/$(CADDY) CADDYLB_BACKEND_BIN=$(CURDIR)/$(BACKEND) \
		$(GO) test -count=1 -timeout 30m -artifacts -outputdir $(TEST_OUTPUT) ./...

vet:
	@unformatted="$$(gofmt -l .)"; \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

# Go benchmarks, then wrk through the built binary: sticky against stock
# lb_policy cookie, forwarded against none, reencrypt against transport
# http with TLS, output s3 against output file, each in one run; then
# uploads through asset_offload against direct PutObject, and their peak
# RSS; the sticky hit path with the dashboard open in Chromium against
# none. Figures go in BENCHMARKS.md.
bench: deps build
	CADDYLB_BIN=$(CURDIR)/$(CADDY) CADDYLB_BACKEND_BIN=$(CURDIR)/$(BACKEND) \
		$(GO) test -run '^$$' -bench . -benchmem ./sessionstore/ ./lbmodule/... ./assetcdn/
	CADDY=$(CURDIR)/$(CADDY) BACKEND=$(CURDIR)/$(BACKEND) integration/bench/sticky.sh
	CADDY=$(CURDIR)/$(CADDY) BACKEND=$(CURDIR)/$(BACKEND) integration/bench/forwarded.sh
	CADDY=$(CURDIR)/$(CADDY) BACKEND=$(CURDIR)/$(BACKEND) integration/bench/reencrypt.sh
	CADDY=$(CURDIR)/$(CADDY) BACKEND=$(CURDIR)/$(BACKEND) integration/bench/logship.sh
	CADDY=$(CURDIR)/$(CADDY) BACKEND=$(CURDIR)/$(BACKEND) integration/bench/fleet.sh
	CADDY=$(CURDIR)/$(CADDY) BACKEND=$(CURDIR)/$(BACKEND) integration/bench/passthrough.sh
	CADDY=$(CURDIR)/$(CADDY) integration/bench/shiplogs.sh
	CADDY=$(CURDIR)/$(CADDY) BACKEND=$(CURDIR)/$(BACKEND) integration/bench/dashboard.sh
	@# Stock Caddy of the same version, no caddy-lb module: the stack's anchor.
	$(GO) build -o $(BIN)/caddy-stock github.com/caddyserver/caddy/v2/cmd/caddy
	CADDY=$(CURDIR)/$(CADDY) BACKEND=$(CURDIR)/$(BACKEND) STOCK=$(CURDIR)/$(BIN)/caddy-stock integration/bench/stack.sh
	CADDY=$(CURDIR)/$(CADDY) BACKEND=$(CURDIR)/$(BACKEND) integration/bench/tuning.sh
	CADDYLB_BIN=$(CURDIR)/$(CADDY) CADDYLB_BACKEND_BIN=$(CURDIR)/$(BACKEND) \
		$(GO) test -run '^$$' -bench 'Offload' -benchtime 1x -timeout 30m ./integration/

# A short run of every fuzz target (go test runs their seeds on every test).
FUZZTIME ?= 20s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzTokenVerify$$' -fuzztime $(FUZZTIME) ./lbmodule/affinity/
	$(GO) test -run '^$$' -fuzz '^FuzzMarkPrivate$$' -fuzztime $(FUZZTIME) ./lbmodule/affinity/
	$(GO) test -run '^$$' -fuzz '^FuzzLearnSetCookie$$' -fuzztime $(FUZZTIME) ./lbmodule/affinity/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeBinding$$' -fuzztime $(FUZZTIME) ./sessionstore/
	$(GO) test -run '^$$' -fuzz '^FuzzParseXForwardedFor$$' -fuzztime $(FUZZTIME) ./lbmodule/forwarded/
	$(GO) test -run '^$$' -fuzz '^FuzzParseForwarded$$' -fuzztime $(FUZZTIME) ./lbmodule/forwarded/
	$(GO) test -run '^$$' -fuzz '^FuzzServeHTTP$$' -fuzztime $(FUZZTIME) ./lbmodule/forwarded/
	$(GO) test -run '^$$' -fuzz '^FuzzPeerNode$$' -fuzztime $(FUZZTIME) ./lbmodule/forwarded/
	$(GO) test -run '^$$' -fuzz '^FuzzParsePin$$' -fuzztime $(FUZZTIME) ./lbmodule/upstreamtls/
	$(GO) test -run '^$$' -fuzz '^FuzzOffloadMultipart$$' -fuzztime $(FUZZTIME) ./assetcdn/
	$(GO) test -run '^$$' -fuzz '^FuzzSanitizeFilename$$' -fuzztime $(FUZZTIME) ./assetcdn/
	$(GO) test -run '^$$' -fuzz '^FuzzKeyFromPath$$' -fuzztime $(FUZZTIME) ./assetcdn/
	$(GO) test -run '^$$' -fuzz '^FuzzPresignRequest$$' -fuzztime $(FUZZTIME) ./assetcdn/
	$(GO) test -run '^$$' -fuzz '^FuzzParseKeyTemplate$$' -fuzztime $(FUZZTIME) ./assetcdn/
	$(GO) test -run '^$$' -fuzz '^FuzzParseManifest$$' -fuzztime $(FUZZTIME) ./assetcdn/
	$(GO) test -run '^$$' -fuzz '^FuzzParseRange$$' -fuzztime $(FUZZTIME) ./assetcdn/
	$(GO) test -run '^$$' -fuzz '^FuzzKeyTemplate$$' -fuzztime $(FUZZTIME) ./logship/
	$(GO) test -run '^$$' -fuzz '^FuzzEscapeLineSeparators$$' -fuzztime $(FUZZTIME) ./logship/
	$(GO) test -run '^$$' -fuzz '^FuzzTailRecords$$' -fuzztime $(FUZZTIME) ./logship/
	$(GO) test -run '^$$' -fuzz '^FuzzKeyLayoutParse$$' -fuzztime $(FUZZTIME) ./logship/
	$(GO) test -run '^$$' -fuzz '^FuzzLookup$$' -fuzztime $(FUZZTIME) ./logship/logquery/
	$(GO) test -run '^$$' -fuzz '^FuzzWhere$$' -fuzztime $(FUZZTIME) ./logship/logquery/
	$(GO) test -run '^$$' -fuzz '^FuzzTimestamp$$' -fuzztime $(FUZZTIME) ./logship/logquery/
	$(GO) test -run '^$$' -fuzz '^FuzzAdapt$$' -fuzztime $(FUZZTIME) ./caddyfile/
	$(GO) test -run '^$$' -fuzz '^FuzzParseSize$$' -fuzztime $(FUZZTIME) ./internal/quantity/
	$(GO) test -run '^$$' -fuzz '^FuzzAction$$' -fuzztime $(FUZZTIME) ./lbmodule/dashboard/

# Regenerates xcaddy/default.pgo from the whole-stack benchmark's load
# (docs/tuning.md, "The PGO build"); rebuild and measure after.
pgo: deps build
	$(GO) build -o $(BIN)/caddy-stock github.com/caddyserver/caddy/v2/cmd/caddy
	CADDY=$(CURDIR)/$(CADDY) BACKEND=$(CURDIR)/$(BACKEND) STOCK=$(CURDIR)/$(BIN)/caddy-stock integration/bench/pgo.sh

clean:
	rm -rf $(BIN) var integration/demo/var
