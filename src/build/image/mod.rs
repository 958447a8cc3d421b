//! Image files made from an assembled rootfs with the locked tools tree
//! ([`crate::build::tools`]): [`disk`], the bootable raw/qcow2 disk.

pub mod disk;
