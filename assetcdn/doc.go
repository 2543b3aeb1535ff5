// Package assetcdn is caddy-lb's uploads and assets: the asset_offload
// handler (http.handlers.asset_offload), which streams uploads to an object
// store and hands the application signed references; asset_serve
// (http.handlers.asset_serve), which serves stored files by proxy or
// redirect; asset_presign (http.handlers.asset_presign) for direct uploads;
// asset_urls (http.handlers.asset_urls) and the asset_url template function
// (http.handlers.templates.functions.assets) for environment-based asset
// URLs; and the `caddy assets sync` command. Stores come from package
// objectstore.
//
// See docs/assets.md.
package assetcdn
