// Package logship is the `s3` log writer (caddy.logging.writers.s3): it
// ships Caddy's logs, access logs included, to an object store declared
// with the `asset_store` global option (S3 or a local directory), so the
// logs of every load balancer node end up in one bucket.
//
//	log {
//		output s3 {
//			store logs
//			prefix caddy
//		}
//	}
//
// Each entry is appended to a file in a local spool directory (one write
// per entry, as Caddy's file writer does). The file is rolled when it
// reaches roll_size or roll_interval, gzipped, and uploaded oldest first,
// one at a time, with capped exponential backoff. A spool file is deleted
// only after the store acknowledged the upload. When the spool reaches
// spool_max, on_full says what gives: the oldest files (drop_oldest) or
// new entries (refuse_new); either is counted in
// caddylb_logship_dropped_bytes_total.
//
// Delivery is at least once. The object key of a spool file is derived
// from its name (creation time and a random UUID) and the settings in
// force when it is uploaded, so an upload repeated after a crash or a
// failed acknowledgement overwrites the same object instead of adding a
// copy. A line can reach the store twice only when a store acknowledged
// a write it did not keep, or when the process died between the store's
// acknowledgement and the file's deletion and came back with a different
// prefix, host, name or key template (the repeat then lands under the new
// key). What a kill -9 of the process can cost: nothing that was written
// (entries go to the file with write(2), the kernel keeps them); a power
// loss can cost the entries not yet flushed by the kernel to disk.
//
// Caddy v2.11.9 never closes log writers (they stay in its writer pool
// for the life of the process), so the spool and its uploader are tied
// to the module's Provision and Cleanup instead: the spool of a
// directory lives as long as the process, and its uploader from the
// first config that uses it until the process exits, so that entries an
// old config's loggers write after a reload are shipped too. At exit the
// current file is rolled and pending files are uploaded for up to
// flush_timeout; what remains is uploaded by the next process that uses
// the same spool directory, or that finds it unused and adopts it (each
// spool records its settings in writer.json).
package logship
