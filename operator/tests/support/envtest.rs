//! A real Kubernetes control plane for tests: etcd, kube-apiserver,
//! kube-controller-manager and kube-scheduler (v1.20.2, built by
//! `tests/envtest/install.sh`) from `$SLUICE_ENVTEST_BIN`, on free loopback ports, with
//! all state in a temporary directory. Everything is killed on drop, also when the test
//! panics. Control planes are started one at a time per machine (a file lock), so
//! timing-sensitive tests do not compete with each other for the two cores.
//!
//! When no control plane can run here (no `$SLUICE_ENVTEST_BIN`, a binary or tool
//! missing), a test fails under CI (`CI=true` or `CI=1`) and is skipped elsewhere: it
//! writes `SKIPPED: <test>: <reason>` to stderr and returns ([`unavailable`]).
//! `.config/nextest.toml` shows these tests' output on success, so a skip is seen.

use std::fs::File;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use fs2::FileExt;

/// Environment variable naming the directory with the control-plane binaries.
pub const BIN_ENV: &str = "SLUICE_ENVTEST_BIN";
/// Environment variable that marks a CI run.
pub const CI_ENV: &str = "CI";
/// The control-plane binaries `$SLUICE_ENVTEST_BIN` must hold.
const BINARIES: [&str; 4] = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"];
/// Tools the harness runs from `PATH`.
const TOOLS: [&str; 3] = ["openssl", "curl", "kubectl"];

/// What a test does when no control plane can run here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    /// Under CI: the test fails with this message.
    Fail(String),
    /// Elsewhere: this line goes to stderr and the test returns.
    Skip(String),
}

/// Whether the value of `$CI` marks a CI run: `true` (any case) or `1`.
pub fn is_ci(value: Option<&str>) -> bool {
    value.map(str::trim).is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// The decision for `test` when the control plane cannot run for `reason`, given the
/// value of `$CI`: a CI run that cannot test what it claims to test fails; a developer
/// machine without the control plane skips, and says so.
pub fn unavailable(ci: Option<&str>, test: &str, reason: &str) -> Unavailable {
    if is_ci(ci) {
        Unavailable::Fail(format!("{test}: no control plane under {CI_ENV}=true, the test cannot run: {reason}"))
    } else {
        Unavailable::Skip(format!("SKIPPED: {test}: {reason}"))
    }
}

/// The directory of the control-plane binaries, from `bin` (the value of
/// `$SLUICE_ENVTEST_BIN`), or why no control plane can start here.
pub fn prerequisites(bin: Option<PathBuf>) -> Result<PathBuf, String> {
    let Some(bin) = bin else {
        return Err(format!(
            "{BIN_ENV} is not set; run `eval $(tests/envtest/install.sh | grep ^export)` \
             (scripts/test.sh does) to run the tests against a real kube-apiserver"
        ));
    };
    if let Some(b) = BINARIES.iter().map(|b| bin.join(b)).find(|b| !b.is_file()) {
        return Err(format!("{} missing ({BIN_ENV}={}); run tests/envtest/install.sh", b.display(), bin.display()));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(tool) = TOOLS.iter().find(|t| !std::env::split_paths(&path).any(|d| d.join(t).is_file())) {
        return Err(format!("`{tool}` not found on PATH (the harness runs {})", TOOLS.join(", ")));
    }
    Ok(bin)
}

/// The name of the running test: libtest names each test's thread after it.
fn current_test() -> String {
    std::thread::current().name().unwrap_or("<unnamed test>").to_string()
}

/// A running control plane.
#[derive(Debug)]
pub struct ControlPlane {
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub url: String,
    children: Vec<(String, Child)>,
    _lock: File,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run command");
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl ControlPlane {
    /// Starts a control plane. When none can run here ([`prerequisites`]): under
    /// CI, panics with the reason; elsewhere, writes `SKIPPED: <test>: <reason>` to
    /// stderr and returns `None`. A control plane that is there but fails to start is a
    /// failure everywhere.
    pub fn start() -> Option<Self> {
        let bin = match prerequisites(std::env::var_os(BIN_ENV).map(PathBuf::from)) {
            Ok(bin) => bin,
            Err(reason) => match unavailable(std::env::var(CI_ENV).ok().as_deref(), &current_test(), &reason) {
                Unavailable::Fail(message) => panic!("{message}"),
                Unavailable::Skip(line) => {
                    // Straight to the process's stderr, past libtest's capture: a skip
                    // is seen under `cargo test` too.
                    let _ = writeln!(std::io::stderr(), "{line}");
                    return None;
                }
            },
        };
        let lock = File::create(std::env::temp_dir().join("sluice-envtest.lock")).expect("lock file");
        lock.lock_exclusive().expect("lock");
        let dir = tempfile::Builder::new().prefix("sluice-envtest-").tempdir().expect("temp dir");
        let mut cp = ControlPlane {
            kubeconfig: dir.path().join("kubeconfig"),
            url: String::new(),
            dir,
            children: Vec::new(),
            _lock: lock,
        };
        cp.boot(&bin);
        Some(cp)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn spawn(&mut self, bin: &Path, name: &str, args: &[String]) {
        let log = File::create(self.path(&format!("{name}.log"))).expect("log file");
        let child = Command::new(bin.join(name))
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        self.children.push((name.to_string(), child));
    }

    fn check_alive(&mut self) {
        for (name, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                panic!(
                    "{name} exited ({status}); last log lines:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
    }

    fn boot(&mut self, bin: &Path) {
        let t0 = Instant::now();
        let (etcd, etcd_peer, api) = (free_port(), free_port(), free_port());
        let token = format!("{:032x}", rand_u128());
        std::fs::write(self.path("tokens.csv"), format!("{token},admin,admin,\"system:masters\"\n")).expect("tokens");
        let (key, public) = (self.path("sa.key"), self.path("sa.pub"));
        run(Command::new("openssl").args(["genrsa", "-out"]).arg(&key).arg("2048"));
        run(Command::new("openssl").args(["rsa", "-pubout", "-in"]).arg(&key).arg("-out").arg(&public));
        std::fs::create_dir_all(self.path("certs")).expect("certs dir");
        let root = self.dir.path().to_path_buf();
        let d = move |p: &str| root.join(p).display().to_string();
        let etcd_args = vec![
            "--data-dir".into(),
            d("etcd-data"),
            "--listen-client-urls".into(),
            format!("http://127.0.0.1:{etcd}"),
            "--advertise-client-urls".into(),
            format!("http://127.0.0.1:{etcd}"),
            "--listen-peer-urls".into(),
            format!("http://127.0.0.1:{etcd_peer}"),
        ];
        let api_args = vec![
            format!("--etcd-servers=http://127.0.0.1:{etcd}"),
            format!("--secure-port={api}"),
            "--bind-address=127.0.0.1".into(),
            format!("--cert-dir={}", d("certs")),
            format!("--token-auth-file={}", d("tokens.csv")),
            "--authorization-mode=RBAC".into(),
            format!("--service-account-key-file={}", d("sa.pub")),
            format!("--service-account-signing-key-file={}", d("sa.key")),
            "--service-account-issuer=https://kubernetes.default.svc".into(),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            "--allow-privileged=true".into(),
            "--insecure-port=0".into(),
        ];
        self.spawn(bin, "etcd", &etcd_args);
        self.spawn(bin, "kube-apiserver", &api_args);
        self.url = format!("https://127.0.0.1:{api}");
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            self.check_alive();
            let out = Command::new("curl")
                .args(["-sk", "--max-time", "2", "-H"])
                .arg(format!("Authorization: Bearer {token}"))
                .arg(format!("{}/readyz", self.url))
                .output();
            if out.is_ok_and(|o| o.stdout == b"ok") {
                break;
            }
            assert!(Instant::now() < deadline, "kube-apiserver not ready after 90 s; see {}", d("kube-apiserver.log"));
            std::thread::sleep(Duration::from_millis(300));
        }
        let ca = std::fs::read(self.path("certs/apiserver.crt")).expect("serving certificate");
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: envtest\n  cluster:\n    server: {}\n    \
             certificate-authority-data: {}\nusers:\n- name: admin\n  user:\n    token: {token}\ncontexts:\n\
             - name: envtest\n  context:\n    cluster: envtest\n    user: admin\n    namespace: default\n\
             current-context: envtest\n",
            self.url,
            base64(&ca)
        );
        std::fs::write(&self.kubeconfig, kubeconfig).expect("kubeconfig");
        let kc = format!("--kubeconfig={}", self.kubeconfig.display());
        let cm_args = vec![
            kc.clone(),
            format!("--service-account-private-key-file={}", d("sa.key")),
            "--leader-elect=false".into(),
            "--port=0".into(),
            "--secure-port=0".into(),
        ];
        self.spawn(bin, "kube-controller-manager", &cm_args);
        let sched_args = vec![kc, "--leader-elect=false".into(), "--port=0".into(), "--secure-port=0".into()];
        self.spawn(bin, "kube-scheduler", &sched_args);
        eprintln!("envtest: control plane at {} ready in {:.1} s ({})", self.url, t0.elapsed().as_secs_f64(), d(""));
    }

    /// A kube client for the admin user.
    pub async fn client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig).expect("read kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.expect("kubeconfig");
        kube::Client::try_from(config).expect("client")
    }

    /// Runs the machine's `kubectl` against this control plane.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut child = Command::new("kubectl")
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        if let Some(mut input) = child.stdin.take() {
            input.write_all(stdin.unwrap_or_default().as_bytes()).expect("kubectl stdin");
        }
        child.wait_with_output().expect("kubectl")
    }

    /// Applies `crds/` with `kubectl apply --server-side` and waits until they are established.
    pub fn install_crds(&self) {
        let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
        let out = self.kubectl(&["apply", "--server-side", "-f", crds.to_str().expect("utf-8 path")], None);
        assert!(out.status.success(), "kubectl apply crds: {}", String::from_utf8_lossy(&out.stderr));
        let out = self.kubectl(
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/clusters.sluice.dev",
                "crd/topics.sluice.dev",
                "crd/consumergroups.sluice.dev",
            ],
            None,
        );
        assert!(out.status.success(), "CRDs not established: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // Controllers first, etcd last; SIGKILL: nothing here needs a clean shutdown.
        for (_, child) in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            // Keep the logs of a failed test.
            let kept = self.dir.path().to_path_buf();
            let _ = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir")).keep();
            eprintln!("envtest: logs kept in {}", kept.display());
        }
    }
}

fn rand_u128() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    let s = std::collections::hash_map::RandomState::new();
    let mut h = s.build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    let a = h.finish();
    let mut h = s.build_hasher();
    h.write_u64(a ^ u64::from(std::process::id()));
    (u128::from(a) << 64) | u128::from(h.finish())
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
