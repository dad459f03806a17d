//! redb table definitions and key/value encodings of the core's tables.

/// Every table the core owns, in digest and snapshot order. All keys and values are bytes:
/// fixed-width big-endian keys, postcard values with a leading format-version byte.
pub const TABLES: &[redb::TableDefinition<'static, &'static [u8], &'static [u8]>] = &[];
