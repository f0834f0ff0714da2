//! A pod's volumes on the node, under `<pods-dir>/<uid>/volumes/<plugin>/<name>` as kubelet lays them
//! out: emptyDir (a directory, or tmpfs for medium Memory with its sizeLimit), hostPath with its type
//! check, configMap, secret (on tmpfs, never on disk), downwardAPI and projected files written from their
//! sources by kubelet's atomic writer (`atomic_writer.rs`), and persistentVolumeClaims resolved to their
//! bound PV's path (and the group its `pv.beta.kubernetes.io/gid` names); the pod's fsGroup owns what
//! kubelet would give it. Then each container's volumeMounts (with subPath, or subPathExpr expanded from
//! its environment) become bind mounts, read-only with their submounts under recursiveReadOnly, with
//! the mount propagation they ask for.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, KeyToPath, Pod, Volume, VolumeMount};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::atomic_writer;
use super::env::{field_value, resource_value, Sources};
use crate::agent::runtime::{BindAccess, MountKind, MountPropagation, MountSpec};
use crate::api::quantity;

/// A volume ready on the node: where it is and whether containers may write to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub path: PathBuf,
    pub readonly: bool,
    /// The group a claimed volume's PersistentVolume names (`pv.beta.kubernetes.io/gid`).
    pub group: Option<u32>,
}

/// The groups the pod's volumes name, which kubelet adds to its processes' supplementary groups.
pub fn groups(prepared: &HashMap<String, Prepared>) -> Vec<u32> {
    prepared.values().filter_map(|p| p.group).collect()
}

/// The names of the ConfigMaps and Secrets the pod's volumes read.
pub fn referenced(pod: &Pod) -> (Vec<String>, Vec<String>) {
    let mut cms = Vec::new();
    let mut secrets = Vec::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        if let Some(c) = &v.config_map {
            cms.push(c.name.clone());
        }
        if let Some(s) = &v.secret {
            secrets.extend(s.secret_name.clone());
        }
        for source in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(c) = &source.config_map {
                cms.push(c.name.clone());
            }
            if let Some(s) = &source.secret {
                secrets.push(s.name.clone());
            }
        }
    }
    (cms, secrets)
}

/// The claim names of the pod's persistentVolumeClaim volumes.
pub fn claims(pod: &Pod) -> Vec<String> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| {
            v.persistent_volume_claim
                .as_ref()
                .map(|c| c.claim_name.clone())
        })
        .collect()
}

pub struct Context<'a> {
    pub pod: &'a Pod,
    pub pod_dir: &'a Path,
    pub sources: &'a Sources,
    /// Claim name → its bound volume.
    pub claims: &'a HashMap<String, Claimed>,
    pub allocatable: &'a BTreeMap<String, Quantity>,
}

/// The volume a claim is bound to, on this node.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub path: PathBuf,
    /// A `local` volume, whose files the pod's fsGroup owns as kubelet sets it; a hostPath one stays as
    /// the host has it.
    pub owned_by_pod: bool,
    /// The group its PersistentVolume names for its users (`pv.beta.kubernetes.io/gid`).
    pub group: Option<u32>,
}

/// Makes `path` and missing parents with `mode` (whatever the umask).
pub fn make_dir(path: &Path, mode: u32) {
    use std::os::unix::fs::DirBuilderExt;
    if std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .is_ok()
    {
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
    }
}

/// The pod's fsGroup: the group kubelet gives the files of the volumes it manages.
fn fs_group(cx: &Context) -> Option<u32> {
    let group = cx.pod.spec.as_ref()?.security_context.as_ref()?.fs_group?;
    u32::try_from(group).ok()
}

/// kubelet's SetVolumeOwnership: everything under `root` gets `group`, with group read permission (and
/// write, unless `readonly`), and directories setgid so that new files inherit the group. Unless `always`,
/// a volume whose root already has the group and setgid is left alone (fsGroupChangePolicy
/// OnRootMismatch). The walk goes from descriptor to descriptor and never follows a symlink: a pod that
/// swaps a file for a link while it runs cannot lead it to the node's files.
fn set_volume_ownership(
    root: &Path,
    group: u32,
    readonly: bool,
    always: bool,
) -> Result<(), String> {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::Mode;
    use std::os::fd::{FromRawFd, OwnedFd};
    let directory = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = open(root, directory, Mode::empty())
        .map_err(|e| format!("opening {}: {e}", root.display()))?;
    // SAFETY: `open` returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let stat = nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(&fd))
        .map_err(|e| format!("reading {}: {e}", root.display()))?;
    if !always && stat.st_gid == group && stat.st_mode & 0o2000 != 0 {
        return Ok(());
    }
    let mut pending = vec![fd];
    while let Some(dir) = pending.pop() {
        pending.extend(
            own_directory(&dir, group, readonly)
                .map_err(|e| format!("setting the group of {}: {e}", root.display()))?,
        );
    }
    Ok(())
}

/// Gives the directory open at `dir` and its files to `group`; returns its subdirectories, opened.
fn own_directory(
    dir: &std::os::fd::OwnedFd,
    group: u32,
    readonly: bool,
) -> nix::Result<Vec<std::os::fd::OwnedFd>> {
    use nix::fcntl::{openat, AtFlags, OFlag};
    use nix::sys::stat::{fstatat, Mode, SFlag};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let gid = Some(nix::unistd::Gid::from_raw(group));
    let mask = if readonly { 0o440 } else { 0o660 };
    let own = |fd: &OwnedFd, directory: bool| -> nix::Result<()> {
        let mode = nix::sys::stat::fstat(fd.as_raw_fd())?.st_mode & 0o7777;
        nix::unistd::fchown(fd.as_raw_fd(), None, gid)?;
        let extra = if directory { 0o2110 } else { 0 };
        nix::sys::stat::fchmod(
            fd.as_raw_fd(),
            Mode::from_bits_truncate(mode | mask | extra),
        )
    };
    own(dir, true)?;
    // The descriptor's own directory, whatever path led to it.
    let listing = std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))
        .map_err(|e| nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    let mut subdirectories = Vec::new();
    for entry in listing.flatten() {
        let name = entry.file_name();
        let Ok(stat) = fstatat(
            Some(dir.as_raw_fd()),
            name.as_os_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) else {
            continue;
        };
        let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
        let opened = match kind {
            SFlag::S_IFDIR => OFlag::O_DIRECTORY,
            SFlag::S_IFREG => OFlag::O_NONBLOCK,
            // Links, devices, FIFOs and sockets keep theirs: nothing is opened through them.
            _ => continue,
        };
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | opened;
        // Gone or swapped for a link since it was listed: skipped.
        let Ok(fd) = openat(
            Some(dir.as_raw_fd()),
            name.as_os_str(),
            flags,
            Mode::empty(),
        ) else {
            continue;
        };
        // SAFETY: `openat` returned a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        if kind == SFlag::S_IFDIR {
            subdirectories.push(fd);
        } else {
            own(&fd, false)?;
        }
    }
    Ok(subdirectories)
}

/// Where the pod's emptyDir `name` is (under the pod's directory `pod_dir`).
pub fn empty_dir_path(pod_dir: &Path, name: &str) -> PathBuf {
    plugin_path(pod_dir, "empty-dir", name)
}

fn plugin_path(pod_dir: &Path, plugin: &str, name: &str) -> PathBuf {
    pod_dir
        .join("volumes")
        .join(format!("kubernetes.io~{plugin}"))
        .join(name)
}

fn plugin_dir(cx: &Context, plugin: &str, name: &str) -> PathBuf {
    plugin_path(cx.pod_dir, plugin, name)
}

fn is_mount_point(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (
        std::fs::metadata(path),
        path.parent().map(std::fs::metadata),
    ) {
        (Ok(m), Some(Ok(parent))) => m.dev() != parent.dev(),
        _ => false,
    }
}

fn mount_tmpfs(dir: &Path, size: Option<i128>) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    if is_mount_point(dir) {
        return Ok(());
    }
    let options = size.map(|s| format!("size={s}"));
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
        options.as_deref(),
    )
    .map_err(|e| format!("mounting tmpfs on {}: {e}", dir.display()))
}

/// A relative path that stays beneath its directory: no `..`, not absolute.
fn safe_relative(path: &str) -> Result<&str, String> {
    let p = Path::new(path);
    if p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!(
            "invalid path {path:?}: must be relative and may not contain '..'"
        ));
    }
    Ok(path)
}

/// Files from a key → value map, through `items` when given (only those keys, at their paths).
fn keyed_files(
    what: &str,
    name: &str,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: u32,
    optional: bool,
    out: &mut BTreeMap<String, (Vec<u8>, u32)>,
) -> Result<(), String> {
    match items {
        None => {
            for (k, v) in data {
                out.insert(k.clone(), (v.clone(), default_mode));
            }
        }
        Some(items) => {
            for item in items {
                match data.get(&item.key) {
                    Some(v) => {
                        out.insert(
                            item.path.clone(),
                            (v.clone(), item.mode.map_or(default_mode, |m| m as u32)),
                        );
                    }
                    None if optional => {}
                    None => {
                        return Err(format!(
                            "configuration error: couldn't find key {} in {what} {name}",
                            item.key
                        ))
                    }
                }
            }
        }
    }
    Ok(())
}

/// The files of one ConfigMap or Secret source (`data` None: it does not exist).
fn source_files(
    what: &str,
    name: &str,
    data: Option<BTreeMap<String, Vec<u8>>>,
    items: Option<&Vec<KeyToPath>>,
    mode: u32,
    optional: bool,
    out: &mut BTreeMap<String, (Vec<u8>, u32)>,
) -> Result<(), String> {
    match data {
        Some(data) => keyed_files(what, name, &data, items, mode, optional, out),
        None if optional => Ok(()),
        None => Err(format!("{} \"{name}\" not found", what.to_lowercase())),
    }
}

fn config_map_bytes(sources: &Sources, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
    let cm = sources.config_maps.get(name)?.as_ref()?;
    let mut data: BTreeMap<String, Vec<u8>> = cm
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    for (k, v) in cm.binary_data.clone().unwrap_or_default() {
        data.insert(k, v.0);
    }
    Some(data)
}

fn secret_bytes(sources: &Sources, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
    let s = sources.secrets.get(name)?.as_ref()?;
    let mut data: BTreeMap<String, Vec<u8>> = s
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    for (k, v) in s.string_data.clone().unwrap_or_default() {
        data.insert(k, v.into_bytes());
    }
    Some(data)
}

fn downward_files(
    cx: &Context,
    items: &[k8s_openapi::api::core::v1::DownwardAPIVolumeFile],
    default_mode: u32,
    out: &mut BTreeMap<String, (Vec<u8>, u32)>,
) -> Result<(), String> {
    for item in items {
        let value = if let Some(f) = &item.field_ref {
            field_value(cx.pod, &f.field_path)?
        } else if let Some(r) = &item.resource_field_ref {
            let name = r.container_name.clone().unwrap_or_default();
            let container = cx
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.containers.iter().find(|c| c.name == name))
                .ok_or_else(|| format!("container {name:?} not found"))?;
            resource_value(container, &r.resource, r.divisor.as_ref(), cx.allocatable)?
        } else {
            continue;
        };
        out.insert(
            item.path.clone(),
            (
                value.into_bytes(),
                item.mode.map_or(default_mode, |m| m as u32),
            ),
        );
    }
    Ok(())
}

const DEFAULT_MODE: u32 = 0o644;

/// Prepares one volume, owned by the pod's fsGroup where kubelet gives it one; errors read like kubelet's
/// MountVolume.SetUp failures.
pub fn prepare(cx: &Context, volume: &Volume) -> Result<Prepared, String> {
    let prepared = prepare_files(cx, volume)?;
    let Some(group) = fs_group(cx) else {
        return Ok(prepared);
    };
    // As kubelet: the volumes it makes and fills, and local persistent volumes; never the host's paths.
    let owned = volume.empty_dir.is_some()
        || volume.config_map.is_some()
        || volume.secret.is_some()
        || volume.downward_api.is_some()
        || volume.projected.is_some()
        || volume
            .persistent_volume_claim
            .as_ref()
            .and_then(|c| cx.claims.get(&c.claim_name))
            .is_some_and(|c| c.owned_by_pod);
    // The files kubelet writes itself got the group before they were published.
    let written = volume.empty_dir.is_none() && volume.persistent_volume_claim.is_none();
    if owned && !written {
        set_volume_ownership(&prepared.path, group, false, false)?;
    }
    Ok(prepared)
}

/// Writes the files of a configMap, secret, downwardAPI or projected volume (kubelet's atomic writer),
/// owned by the pod's fsGroup, read-only, before they show.
fn publish(
    cx: &Context,
    dir: &Path,
    files: &BTreeMap<String, (Vec<u8>, u32)>,
) -> Result<(), String> {
    atomic_writer::write(dir, files, || match fs_group(cx) {
        Some(group) => set_volume_ownership(dir, group, true, true),
        None => Ok(()),
    })
}

/// The volume's directory, made and filled as its type says.
fn prepare_files(cx: &Context, volume: &Volume) -> Result<Prepared, String> {
    let name = &volume.name;
    let ok = |path: PathBuf, readonly: bool| {
        Ok(Prepared {
            path,
            readonly,
            group: None,
        })
    };
    if let Some(e) = &volume.empty_dir {
        let dir = plugin_dir(cx, "empty-dir", name);
        if e.medium.as_deref() == Some("Memory") {
            let size = e
                .size_limit
                .as_ref()
                .and_then(|q| quantity::parse_quantity(&q.0).ok())
                .map(|q| q.to_bytes());
            mount_tmpfs(&dir, size)?;
        } else {
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("creating {}: {e}", dir.display()))?;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777));
        }
        return ok(dir, false);
    }
    if let Some(h) = &volume.host_path {
        let path = PathBuf::from(&h.path);
        let kind = h.type_.as_deref().unwrap_or("");
        let meta = std::fs::metadata(&path);
        let fail = |what: &str| {
            Err(format!(
                "hostPath type check failed: {} is not a {what}",
                h.path
            ))
        };
        use std::os::unix::fs::FileTypeExt;
        match kind {
            // Made when missing, as kubelet makes it (0755); a directory that exists is the host's and
            // is left as it is.
            "DirectoryOrCreate" if meta.is_err() => {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(&path)
                    .map_err(|e| format!("creating {}: {e}", h.path))?;
            }
            "DirectoryOrCreate" if !meta.as_ref().is_ok_and(|m| m.is_dir()) => {
                return fail("directory")
            }
            "FileOrCreate" => {
                if let Some(parent) = path.parent() {
                    let _ = std::fs::create_dir_all(parent);
                }
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| format!("creating {}: {e}", h.path))?;
            }
            "Directory" if !meta.as_ref().is_ok_and(|m| m.is_dir()) => return fail("directory"),
            "File" if !meta.as_ref().is_ok_and(|m| m.is_file()) => return fail("file"),
            "Socket" if !meta.as_ref().is_ok_and(|m| m.file_type().is_socket()) => {
                return fail("socket")
            }
            "CharDevice" if !meta.as_ref().is_ok_and(|m| m.file_type().is_char_device()) => {
                return fail("character device")
            }
            "BlockDevice" if !meta.as_ref().is_ok_and(|m| m.file_type().is_block_device()) => {
                return fail("block device")
            }
            _ => {}
        }
        return ok(path, false);
    }
    if let Some(c) = &volume.config_map {
        let dir = plugin_dir(cx, "configmap", name);
        let mode = c.default_mode.map_or(DEFAULT_MODE, |m| m as u32);
        let optional = c.optional == Some(true);
        let mut files = BTreeMap::new();
        source_files(
            "ConfigMap",
            &c.name,
            config_map_bytes(cx.sources, &c.name),
            c.items.as_ref(),
            mode,
            optional,
            &mut files,
        )?;
        publish(cx, &dir, &files)?;
        return ok(dir, true);
    }
    if let Some(s) = &volume.secret {
        let secret_name = s.secret_name.clone().unwrap_or_default();
        let dir = plugin_dir(cx, "secret", name);
        let mode = s.default_mode.map_or(DEFAULT_MODE, |m| m as u32);
        let optional = s.optional == Some(true);
        let mut files = BTreeMap::new();
        source_files(
            "Secret",
            &secret_name,
            secret_bytes(cx.sources, &secret_name),
            s.items.as_ref(),
            mode,
            optional,
            &mut files,
        )?;
        // Secrets live in memory only.
        mount_tmpfs(&dir, None)?;
        publish(cx, &dir, &files)?;
        return ok(dir, true);
    }
    if let Some(d) = &volume.downward_api {
        let dir = plugin_dir(cx, "downward-api", name);
        let mut files = BTreeMap::new();
        downward_files(
            cx,
            d.items.as_deref().unwrap_or_default(),
            d.default_mode.map_or(DEFAULT_MODE, |m| m as u32),
            &mut files,
        )?;
        publish(cx, &dir, &files)?;
        return ok(dir, true);
    }
    if let Some(p) = &volume.projected {
        let dir = plugin_dir(cx, "projected", name);
        let mode = p.default_mode.map_or(DEFAULT_MODE, |m| m as u32);
        let mut files = BTreeMap::new();
        for source in p.sources.iter().flatten() {
            if let Some(c) = &source.config_map {
                let optional = c.optional == Some(true);
                source_files(
                    "ConfigMap",
                    &c.name,
                    config_map_bytes(cx.sources, &c.name),
                    c.items.as_ref(),
                    mode,
                    optional,
                    &mut files,
                )?;
            }
            if let Some(s) = &source.secret {
                let optional = s.optional == Some(true);
                source_files(
                    "Secret",
                    &s.name,
                    secret_bytes(cx.sources, &s.name),
                    s.items.as_ref(),
                    mode,
                    optional,
                    &mut files,
                )?;
            }
            if let Some(d) = &source.downward_api {
                downward_files(cx, d.items.as_deref().unwrap_or_default(), mode, &mut files)?;
            }
            if source.service_account_token.is_some() {
                return Err(
                    "serviceAccountToken projections are not supported by this node".into(),
                );
            }
        }
        mount_tmpfs(&dir, None)?;
        publish(cx, &dir, &files)?;
        return ok(dir, true);
    }
    if let Some(c) = &volume.persistent_volume_claim {
        return match cx.claims.get(&c.claim_name) {
            Some(claimed) => Ok(Prepared {
                path: claimed.path.clone(),
                readonly: c.read_only == Some(true),
                group: claimed.group,
            }),
            None => Err(format!(
                "persistentvolumeclaim \"{}\" is not bound to a local or hostPath volume",
                c.claim_name
            )),
        };
    }
    Err("volume type not supported by this node".into())
}

/// The container's volumeMounts as bind mounts; subPaths (a subPathExpr expanded from the container's
/// environment `env`) are created inside the volume.
pub fn mounts(
    container: &Container,
    prepared: &HashMap<String, Prepared>,
    env: &[(String, String)],
) -> Result<Vec<MountSpec>, String> {
    let mut out = Vec::new();
    for m in container.volume_mounts.iter().flatten() {
        let volume = prepared
            .get(&m.name)
            .ok_or_else(|| format!("volume {:?} is not prepared", m.name))?;
        let mut source = volume.path.clone();
        let sub = match m.sub_path_expr.as_deref().filter(|e| !e.is_empty()) {
            Some(expr) => Some(super::env::expand_sub_path(expr, env)?),
            None => m.sub_path.clone(),
        };
        if let Some(sub) = sub.as_deref().filter(|s| !s.is_empty()) {
            source = source.join(safe_relative(sub)?);
            if !source.exists() {
                std::fs::create_dir_all(&source)
                    .map_err(|e| format!("creating subPath {}: {e}", source.display()))?;
            }
            // A subPath must not leave its volume through a symlink.
            let real = source
                .canonicalize()
                .map_err(|e| format!("subPath {sub}: {e}"))?;
            let root = volume
                .path
                .canonicalize()
                .map_err(|e| format!("volume {}: {e}", m.name))?;
            if !real.starts_with(&root) {
                return Err(format!("subPath {sub:?} leaves its volume"));
            }
            // The file itself, as kubelet binds it: a configMap key's link would be followed at mount
            // time, after the check.
            source = real;
        }
        let access = if recursively_read_only(m)? {
            BindAccess::RecursiveReadOnly
        } else if volume.readonly || m.read_only == Some(true) {
            BindAccess::ReadOnly
        } else {
            BindAccess::ReadWrite
        };
        let propagation = match m.mount_propagation.as_deref() {
            None | Some("None") => MountPropagation::Private,
            Some("HostToContainer") => MountPropagation::HostToContainer,
            Some("Bidirectional") => MountPropagation::Bidirectional,
            // kubelet's translateMountPropagation.
            Some(other) => return Err(format!("invalid MountPropagation mode: {other:?}")),
        };
        out.push(MountSpec {
            destination: m.mount_path.clone(),
            kind: MountKind::Bind {
                source,
                access,
                propagation,
            },
        });
    }
    Ok(out)
}

/// kubelet's resolveRecursiveReadOnly on a runtime that makes recursive read-only mounts (every orch
/// node: its bind mounts are made with mount_setattr, which can set read-only on a whole tree): whether
/// the mount and the mounts under it are read-only. IfPossible is therefore Enabled.
pub fn recursively_read_only(m: &VolumeMount) -> Result<bool, String> {
    let fail = |why: String| {
        Err(format!(
            "failed to resolve recursive read-only mode: volume {:?} requested recursive read-only \
             mode, but {why}",
            m.name
        ))
    };
    match m.recursive_read_only.as_deref() {
        None | Some("Disabled") => Ok(false),
        Some(_) if m.read_only != Some(true) => fail("it is not read-only".into()),
        Some(_) if m.mount_propagation.as_deref().is_some_and(|p| p != "None") => fail(format!(
            "it is not compatible with propagation {:?}",
            m.mount_propagation.as_deref().unwrap_or_default()
        )),
        Some("IfPossible" | "Enabled") => Ok(true),
        Some(other) => Err(format!(
            "failed to resolve recursive read-only mode: unknown recursive read-only mode {other:?}"
        )),
    }
}

/// Unmounts what is mounted under the directory of a pod that is gone — its tmpfs volumes, and what its
/// containers mounted under a Bidirectional volume — deepest first, then removes the directory, which
/// no longer leads into any other filesystem.
pub fn tear_down(pod_dir: &Path) {
    // Only volumes are mounts; the node's mount table is read only for a pod that had some (it grows
    // with the pods, and a thousand pods may go at once).
    if pod_dir.join("volumes").exists() {
        let mounted = crate::util::mounts::read().unwrap_or_default();
        for point in crate::util::mounts::under(&mounted, pod_dir) {
            let _ = nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let _ = std::fs::remove_dir_all(pod_dir);
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ConfigMap, ConfigMapVolumeSource, DownwardAPIVolumeFile, DownwardAPIVolumeSource,
        EmptyDirVolumeSource, HostPathVolumeSource, ObjectFieldSelector,
        PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, VolumeMount,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: Some(PodSpec::default()),
            ..Default::default()
        }
    }

    fn volume(name: &str) -> Volume {
        Volume {
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn config_map_files_follow_items_modes_and_updates() {
        let dir = tempfile::tempdir().unwrap();
        let mut sources = Sources::default();
        let cm = |pairs: &[(&str, &str)]| {
            Some(ConfigMap {
                data: Some(
                    pairs
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            })
        };
        sources
            .config_maps
            .insert("cfg".into(), cm(&[("a", "1"), ("b", "2")]));
        let p = pod();
        let claims = HashMap::new();
        let alloc = BTreeMap::new();
        let cx = Context {
            pod: &p,
            pod_dir: dir.path(),
            sources: &sources,
            claims: &claims,
            allocatable: &alloc,
        };
        let mut v = volume("config");
        v.config_map = Some(ConfigMapVolumeSource {
            name: "cfg".into(),
            default_mode: Some(0o600),
            ..Default::default()
        });
        let prepared = prepare(&cx, &v).unwrap();
        assert!(prepared.readonly);
        assert_eq!(
            std::fs::read_to_string(prepared.path.join("a")).unwrap(),
            "1"
        );
        let mode = std::fs::metadata(prepared.path.join("b"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);

        // An update replaces the content and drops removed keys.
        let mut updated = sources.clone();
        updated
            .config_maps
            .insert("cfg".into(), cm(&[("a", "one")]));
        let cx = Context {
            sources: &updated,
            ..cx
        };
        prepare(&cx, &v).unwrap();
        assert_eq!(
            std::fs::read_to_string(prepared.path.join("a")).unwrap(),
            "one"
        );
        assert!(!prepared.path.join("b").exists());

        let mut items = v.clone();
        items.config_map.as_mut().unwrap().items = Some(vec![KeyToPath {
            key: "missing".into(),
            path: "x".into(),
            mode: None,
        }]);
        assert!(prepare(&cx, &items)
            .unwrap_err()
            .contains("couldn't find key missing"));
        let mut gone = v.clone();
        gone.config_map.as_mut().unwrap().name = "nope".into();
        assert_eq!(
            prepare(&cx, &gone).unwrap_err(),
            "configmap \"nope\" not found"
        );
    }

    #[test]
    fn downward_api_host_path_checks_and_sub_paths() {
        let dir = tempfile::tempdir().unwrap();
        let p = pod();
        let sources = Sources::default();
        let claims = HashMap::new();
        let alloc = BTreeMap::new();
        let cx = Context {
            pod: &p,
            pod_dir: &dir.path().join("pod"),
            sources: &sources,
            claims: &claims,
            allocatable: &alloc,
        };
        let mut d = volume("info");
        d.downward_api = Some(DownwardAPIVolumeSource {
            items: Some(vec![DownwardAPIVolumeFile {
                path: "name".into(),
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        });
        let prepared = prepare(&cx, &d).unwrap();
        assert_eq!(
            std::fs::read_to_string(prepared.path.join("name")).unwrap(),
            "p"
        );

        let mut h = volume("host");
        h.host_path = Some(HostPathVolumeSource {
            path: dir.path().join("nothing-here").display().to_string(),
            type_: Some("Directory".into()),
        });
        assert!(prepare(&cx, &h).unwrap_err().contains("is not a directory"));
        h.host_path.as_mut().unwrap().type_ = Some("DirectoryOrCreate".into());
        let made = prepare(&cx, &h).unwrap().path;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&made), 0o755);
        // One that exists is the host's: its mode stays (a sticky world-writable /tmp stays so).
        std::fs::set_permissions(&made, std::fs::Permissions::from_mode(0o1777)).unwrap();
        prepare(&cx, &h).unwrap();
        assert_eq!(mode(&made), 0o1777);
        let file = dir.path().join("a-file");
        std::fs::write(&file, "").unwrap();
        h.host_path.as_mut().unwrap().path = file.display().to_string();
        assert!(prepare(&cx, &h).unwrap_err().contains("is not a directory"));

        let mut e = volume("scratch");
        e.empty_dir = Some(EmptyDirVolumeSource::default());
        let scratch = prepare(&cx, &e).unwrap();
        let prepared: HashMap<String, Prepared> = [("scratch".to_string(), scratch.clone())].into();
        let container = Container {
            volume_mounts: Some(vec![VolumeMount {
                name: "scratch".into(),
                mount_path: "/data".into(),
                sub_path: Some("sub/dir".into()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let m = mounts(&container, &prepared, &[]).unwrap();
        assert_eq!(
            m[0].kind,
            MountKind::Bind {
                source: scratch.path.join("sub/dir"),
                access: BindAccess::ReadWrite,
                propagation: MountPropagation::Private,
            }
        );
        assert!(scratch.path.join("sub/dir").is_dir());
        let mut escape = container.clone();
        escape.volume_mounts.as_mut().unwrap()[0].sub_path = Some("../x".into());
        assert!(mounts(&escape, &prepared, &[])
            .unwrap_err()
            .contains("may not contain '..'"));

        // subPathExpr takes its names from the container's environment, and each must have a value.
        let mut expr = container.clone();
        let mount = &mut expr.volume_mounts.as_mut().unwrap()[0];
        mount.sub_path = None;
        mount.sub_path_expr = Some("logs/$(POD_NAME)/$(NODE)".into());
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let m = mounts(
            &expr,
            &prepared,
            &env(&[("POD_NAME", "web-0"), ("NODE", "n1")]),
        )
        .unwrap();
        assert_eq!(
            m[0].kind,
            MountKind::Bind {
                source: scratch.path.join("logs/web-0/n1"),
                access: BindAccess::ReadWrite,
                propagation: MountPropagation::Private,
            }
        );
        assert!(scratch.path.join("logs/web-0/n1").is_dir());
        assert_eq!(
            mounts(&expr, &prepared, &env(&[("NODE", "")])).unwrap_err(),
            "missing value for NODE, POD_NAME"
        );
        for (asked, propagation) in [
            ("Bidirectional", MountPropagation::Bidirectional),
            ("HostToContainer", MountPropagation::HostToContainer),
            ("None", MountPropagation::Private),
        ] {
            let mut propagating = container.clone();
            propagating.volume_mounts.as_mut().unwrap()[0].mount_propagation = Some(asked.into());
            let m = mounts(&propagating, &prepared, &[]).unwrap();
            assert!(
                matches!(m[0].kind, MountKind::Bind { propagation: p, .. } if p == propagation),
                "{asked}"
            );
        }
        let mut climbing = expr.clone();
        climbing.volume_mounts.as_mut().unwrap()[0].sub_path_expr = Some("$(UP)/x".into());
        assert!(mounts(&climbing, &prepared, &env(&[("UP", "..")]))
            .unwrap_err()
            .contains("may not contain '..'"));

        // readOnly is the mount's alone; recursiveReadOnly (IfPossible as Enabled) takes its submounts.
        let access = |read_only: Option<bool>, recursive: Option<&str>| {
            let mut c = container.clone();
            let m = &mut c.volume_mounts.as_mut().unwrap()[0];
            m.sub_path = None;
            m.read_only = read_only;
            m.recursive_read_only = recursive.map(str::to_string);
            mounts(&c, &prepared, &[]).map(|m| match &m[0].kind {
                MountKind::Bind { access, .. } => *access,
                other => panic!("{other:?}"),
            })
        };
        assert_eq!(access(Some(true), None), Ok(BindAccess::ReadOnly));
        assert_eq!(
            access(Some(true), Some("Disabled")),
            Ok(BindAccess::ReadOnly)
        );
        for mode in ["IfPossible", "Enabled"] {
            assert_eq!(
                access(Some(true), Some(mode)),
                Ok(BindAccess::RecursiveReadOnly)
            );
        }
        assert_eq!(
            access(None, Some("Enabled")).unwrap_err(),
            "failed to resolve recursive read-only mode: volume \"scratch\" requested recursive \
             read-only mode, but it is not read-only"
        );
        let mut slave = container.clone();
        let m = &mut slave.volume_mounts.as_mut().unwrap()[0];
        m.read_only = Some(true);
        m.recursive_read_only = Some("Enabled".into());
        m.mount_propagation = Some("HostToContainer".into());
        assert!(mounts(&slave, &prepared, &[])
            .unwrap_err()
            .ends_with("it is not compatible with propagation \"HostToContainer\""));
    }

    #[test]
    fn the_pods_fs_group_owns_the_volumes_kubelet_manages_but_not_the_hosts() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let mut sources = Sources::default();
        sources.config_maps.insert(
            "cfg".into(),
            Some(ConfigMap {
                data: Some([("key".to_string(), "value".to_string())].into()),
                ..Default::default()
            }),
        );
        let mut p = pod();
        p.spec.as_mut().unwrap().security_context = Some(PodSecurityContext {
            fs_group: Some(2000),
            ..Default::default()
        });
        let local = dir.path().join("local-pv");
        std::fs::create_dir(&local).unwrap();
        std::fs::write(local.join("old"), "").unwrap();
        // A link a pod left to a file of the node's: the walk must not follow it.
        let outside = dir.path().join("node-file");
        std::fs::write(&outside, "").unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(&outside, local.join("link")).unwrap();
        let claims: HashMap<String, Claimed> = [(
            "data".to_string(),
            Claimed {
                path: local.clone(),
                owned_by_pod: true,
                group: None,
            },
        )]
        .into();
        let alloc = BTreeMap::new();
        let cx = Context {
            pod: &p,
            pod_dir: dir.path(),
            sources: &sources,
            claims: &claims,
            allocatable: &alloc,
        };
        let stat = |p: &Path| {
            let m = std::fs::metadata(p).unwrap();
            (m.gid(), m.mode() & 0o7777)
        };

        let mut config = volume("config");
        config.config_map = Some(ConfigMapVolumeSource {
            name: "cfg".into(),
            default_mode: Some(0o400),
            ..Default::default()
        });
        let files = prepare(&cx, &config).unwrap().path;
        assert_eq!(stat(&files.join("key")), (2000, 0o440));
        assert_eq!(stat(&files).0, 2000);

        let mut scratch = volume("scratch");
        scratch.empty_dir = Some(EmptyDirVolumeSource::default());
        let scratch = prepare(&cx, &scratch).unwrap().path;
        assert_eq!(stat(&scratch), (2000, 0o2777));

        let mut claim = volume("data");
        claim.persistent_volume_claim = Some(PersistentVolumeClaimVolumeSource {
            claim_name: "data".into(),
            ..Default::default()
        });
        prepare(&cx, &claim).unwrap();
        assert_eq!(stat(&local.join("old")), (2000, 0o664));
        assert_eq!(
            stat(&outside),
            (0, 0o600),
            "followed a link out of the volume"
        );
        assert_eq!(stat(&local).0, 2000);

        let host = dir.path().join("host");
        std::fs::create_dir(&host).unwrap();
        let mut host_path = volume("host");
        host_path.host_path = Some(HostPathVolumeSource {
            path: host.display().to_string(),
            type_: Some("Directory".into()),
        });
        prepare(&cx, &host_path).unwrap();
        assert_eq!(stat(&host).0, 0, "the host's directory keeps its group");
    }
}
