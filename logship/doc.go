// Package logship is the s3 log writer (caddy.logging.writers.s3,
// `log { output s3 }`): it spools Caddy's logs, access logs included, to
// local disk, rolls them by size and age, and uploads them gzipped, in
// order, to an object store declared with `asset_store`, so every load
// balancer node's logs end up in one bucket. It imports only objectstore
// of caddy-lb's module packages.
//
// See docs/logs.md.
package logship
