//! Everything walship knows about PostgreSQL: WAL file names, WAL page headers, and running local
//! clusters (for `walship demo` and the integration tests). Nothing outside this module parses a
//! WAL name or header.

pub mod client;
pub mod cluster;
pub mod pidfile;
pub mod server;
pub mod session;
pub mod timeline;
pub mod walheader;
pub mod walname;

pub use walheader::WalHeader;
pub use walname::{WalFileName, WalKind};
