// Package objectstore is caddy-lb's object-store layer: the asset_store app
// (the `asset_store` global option) with its s3 (asset_store.backends.s3)
// and file (asset_store.backends.file) stores, the shared S3 client,
// bounded-memory multipart uploads and object key templates. It is used by
// assetcdn (uploads, serving, assets) and by logship (shipped logs) and
// imports no other caddy-lb module package.
//
// See docs/assets.md (Stores) and docs/logs.md.
package objectstore
