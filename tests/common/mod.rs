pub mod host;
pub mod receiver;
pub mod redis;
