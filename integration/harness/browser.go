package harness

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browserTimeout bounds everything one test does in the browser.
const browserTimeout = 2 * time.Minute

// chromiumPaths are where Debian's chromium package puts the browser.
var chromiumPaths = []string{"chromium", "/usr/bin/chromium", "chromium-browser", "google-chrome"}

// StartBrowser starts a headless Chromium (Debian's `chromium`, which
// `make deps` installs) with its own profile under the test's temp dir,
// and returns a context for chromedp actions in one tab. It ends with the
// test.
func StartBrowser(t testing.TB) context.Context {
	t.Helper()
	path := ""
	for _, p := range chromiumPaths {
		if found, err := exec.LookPath(p); err == nil {
			path = found
			break
		}
	}
	if path == "" {
		t.Fatalf("no Chromium found (looked for %v): run `make deps`, which installs Debian's chromium", chromiumPaths)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.UserDataDir(filepath.Join(t.TempDir(), "chromium")),
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	if os.Geteuid() == 0 {
		// Chromium refuses to run as root with its sandbox (CI machines).
		opts = append(opts, chromedp.NoSandbox)
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx, chromedp.WithErrorf(t.Logf))
	ctx, cancelTimeout := context.WithTimeout(ctx, browserTimeout)
	t.Cleanup(func() {
		cancelTimeout()
		cancelTab()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("starting %s: %v", path, err)
	}
	return ctx
}
