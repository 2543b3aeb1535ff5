package testproc

import (
	"os"
	"path/filepath"
	"testing"
)

// phpRouter answers every request with what PHP made of it: the method,
// $_FILES, $_POST and the Content-Type, as JSON. It is how a PHP
// application behind the load balancer sees an upload.
const phpRouter = `<?php
header('Content-Type: application/json');
echo json_encode([
	'method' => $_SERVER['REQUEST_METHOD'],
	'files' => $_FILES,
	'post' => $_POST,
	'content_type' => $_SERVER['CONTENT_TYPE'] ?? null,
]);
`

// StartPHP runs PHP's built-in web server (php-cli from Debian; the same
// request parsing as PHP-FPM) on a free loopback port with a router that
// reports what PHP parsed from each request.
func StartPHP(t testing.TB) *Proc {
	t.Helper()
	dir := t.TempDir()
	router := filepath.Join(dir, "router.php")
	if err := os.WriteFile(router, []byte(phpRouter), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := FreeAddr(t)
	return Start(t, Spec{
		Name: "php",
		Path: lookPath(t, "php"),
		Args: []string{"-S", addr, router},
		Dir:  dir,
		Addr: addr,
	})
}
