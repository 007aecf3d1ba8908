//! A throwaway PKI made with the openssl command (installed by `./dev test`): P-256 root CAs,
//! intermediates and leaf certificates with the extensions a test asks for. Keys are PKCS#8 PEM
//! with mode 0600 (PostgreSQL refuses a readable server key).
use std::path::{Path, PathBuf};
use std::process::Command;

/// Extensions of an intermediate CA.
pub const INTERMEDIATE_CA: &str = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n";
/// Extensions of a code-signing leaf, as an organisation's PKI issues one for releases.
pub const CODE_SIGNING: &str =
    "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=codeSigning\n";
/// Extensions of a TLS server certificate for 127.0.0.1.
pub const SERVER_127: &str =
    "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n";

/// The directory certificates are written to: `NAME.pem` and `NAME.key` per certificate.
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        Pki { dir: dir.to_path_buf() }
    }

    fn openssl(&self, args: &[&str]) {
        let output = Command::new("openssl").args(args).current_dir(&self.dir).output().expect("the openssl command");
        assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }

    /// `NAME.pem` of a certificate made earlier.
    pub fn pem(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pem"))
    }

    /// `NAME.key`, its private key.
    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }

    fn restrict_key(&self, name: &str) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(self.key(name), std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// `openssl req` making a new P-256 key `NAME.key` and `out` for `subject`, with `extra`.
    fn new_key(&self, name: &str, subject: &str, out: &str, extra: &[&str]) {
        let key = format!("{name}.key");
        let args = ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", &key];
        self.openssl(&[&args[..], &["-out", out, "-subj", subject], extra].concat());
        self.restrict_key(name);
    }

    /// A self-signed root CA.
    pub fn root(&self, name: &str, subject: &str) -> &Self {
        self.new_key(name, subject, &format!("{name}.pem"), &["-x509", "-days", "2"]);
        self
    }

    /// A certificate for a new key, signed by `issuer` with `extensions` (openssl's extfile
    /// syntax).
    pub fn issue(&self, name: &str, subject: &str, issuer: &str, extensions: &str) -> &Self {
        let (csr, ext) = (format!("{name}.csr"), format!("{name}.ext"));
        self.new_key(name, subject, &csr, &[]);
        std::fs::write(self.dir.join(&ext), extensions).unwrap();
        let (issuer_pem, issuer_key, pem) = (format!("{issuer}.pem"), format!("{issuer}.key"), format!("{name}.pem"));
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &issuer_pem,
            "-CAkey",
            &issuer_key,
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
        self.restrict_key(name);
        self
    }

    /// `names`' certificates concatenated into `NAME.pem` (a chain, in the order given).
    pub fn chain(&self, name: &str, names: &[&str]) -> PathBuf {
        let text: String = names.iter().map(|n| std::fs::read_to_string(self.pem(n)).unwrap()).collect();
        std::fs::write(self.pem(name), text).unwrap();
        self.pem(name)
    }
}
