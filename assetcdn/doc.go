// Package assetcdn keeps uploaded files and static assets in one place that
// every web server behind the load balancer can reach.
//
// It provides:
//   - the `asset_store` app: named object stores, either S3-compatible
//     storage (AWS S3, versitygw, MinIO, R2) or a local directory for
//     development, one client per store shared across config reloads;
//   - `asset_offload` (http.handlers.asset_offload): streams uploads to a
//     store as they arrive and hands the application signed references;
//   - `asset_serve` (http.handlers.asset_serve): serves stored files, by
//     redirect to the public/CDN URL or proxied from the store;
//   - the `asset_url` template function, for environment-based asset URLs;
//   - `caddy assets sync`, which uploads a build directory with a manifest.
//
// Log shipping (package logship) writes through the same stores.
package assetcdn
