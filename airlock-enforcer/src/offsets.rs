//! The kernel struct member offsets the eBPF program reads, resolved from
//! the running kernel's BTF (CO-RE done by the loader: aya-ebpf cannot emit
//! field relocations, so the program takes the offsets as a global).

use airlock_common::kernel::KernelOffsets;

use crate::btf::{Btf, BtfError};

pub fn resolve(btf: &Btf) -> Result<KernelOffsets, BtfError> {
    let at = |root: &str, path: &[&str]| btf.member_offset(root, path);
    Ok(KernelOffsets {
        binprm_file: at("linux_binprm", &["file"])?,
        binprm_argc: at("linux_binprm", &["argc"])?,
        binprm_filename: at("linux_binprm", &["filename"])?,
        binprm_buf: at("linux_binprm", &["buf"])?,
        file_inode: at("file", &["f_inode"])?,
        file_dentry: at("file", &["f_path", "dentry"])?,
        file_mode: at("file", &["f_mode"])?,
        dentry_name: at("dentry", &["d_name", "name"])?,
        inode_ino: at("inode", &["i_ino"])?,
        inode_sb: at("inode", &["i_sb"])?,
        inode_size: at("inode", &["i_size"])?,
        sb_dev: at("super_block", &["s_dev"])?,
        sb_magic: at("super_block", &["s_magic"])?,
        task_mm: at("task_struct", &["mm"])?,
        task_real_parent: at("task_struct", &["real_parent"])?,
        task_tgid: at("task_struct", &["tgid"])?,
        mm_arg_start: at("mm_struct", &["arg_start"])?,
        mm_arg_end: at("mm_struct", &["arg_end"])?,
        mm_exe_file: at("mm_struct", &["exe_file"])?,
        sock_cgroup: at("sock", &["sk_cgrp_data", "cgroup"])?,
        sock_uid: at("sock", &["sk_uid"])?,
        sock_reuseport_cb: at("sock", &["sk_reuseport_cb"])?,
        reuseport_num_socks: at("sock_reuseport", &["num_socks"])?,
        reuseport_socks: at("sock_reuseport", &["socks"])?,
        socket_sk: at("socket", &["sk"])?,
        sock_socket: at("sock", &["sk_socket"])?,
        socket_inode: at("socket_alloc", &["vfs_inode"])? - at("socket_alloc", &["socket"])?,
        unix_addr: at("unix_sock", &["addr"])?,
        unix_address_len: at("unix_address", &["len"])?,
        unix_address_name: at("unix_address", &["name"])?,
        cgroup_kn: at("cgroup", &["kn"])?,
        kernfs_node_id: at("kernfs_node", &["id"])?,
        task_cgroups: at("task_struct", &["cgroups"])?,
        css_set_dfl_cgrp: at("css_set", &["dfl_cgrp"])?,
        task_real_cred: at("task_struct", &["real_cred"])?,
        cred_uid: at("cred", &["uid"])?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_offset_resolves_on_the_running_kernel() {
        let btf = Btf::from_sys_fs().expect("this kernel has BTF");
        let offsets = resolve(&btf).expect("all members exist");
        // The path and the dentry are adjacent in `struct path`.
        assert_eq!(
            offsets.file_dentry,
            btf.member_offset("file", &["f_path"]).unwrap() + 8
        );
        assert_eq!(offsets.mm_arg_end, offsets.mm_arg_start + 8);
        assert!(offsets.task_mm > 0 && offsets.binprm_buf > 0);
        // A unix_sock starts with its struct sock; the address follows it.
        assert!(offsets.unix_addr >= offsets.sock_cgroup);
        // unix_address: a refcount and the length before the name.
        assert_eq!(
            (offsets.unix_address_len, offsets.unix_address_name),
            (4, 8)
        );
    }
}
