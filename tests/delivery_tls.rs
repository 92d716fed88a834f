//! Mutual TLS against a real Mosquitto with `require_certificate` and an ACL that lets each
//! instrument write only under its own topics (`pattern write lumiq/v1/+/%u/#`, the client
//! certificate's CN as user name):
//! - a certificate from the broker's CA delivers, and every payload is valid;
//! - a certificate from another CA is refused, and the status says to check the certificate;
//! - a broker certificate the configured CA did not sign is refused on our side;
//! - publishing outside the instrument's topics is detected: MQTT 5 brings the ACL refusal
//!   back as a PUBACK reason code, the record stays unacknowledged, the status says so.
//!
//! Certificates are made here with the `openssl` command line.

#[path = "common/delivery.rs"]
mod delivery_common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use delivery_common::*;
use lumiq::delivery::{
    synthetic, BrokerConfig, LinkState, Outbox, OutboxConfig, Publisher, PublisherConfig,
    PublisherHandle, TlsFiles, Topics,
};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`<name>.crt`, `<name>.key`).
fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
        ],
    );
}

/// A leaf certificate `<name>.crt`/`<name>.key` with CN `cn`, signed by CA `ca`.
fn make_leaf(dir: &Path, ca: &str, name: &str, cn: &str, server: bool) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={cn}"),
        ],
    );
    let ext = if server {
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
    } else {
        "extendedKeyUsage=clientAuth\n"
    };
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}

struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        make_ca(dir, "ca");
        make_ca(dir, "rogue-ca");
        make_leaf(dir, "ca", "server", "localhost", true);
        make_leaf(dir, "ca", "imager-01", "imager-01", false);
        make_leaf(dir, "ca", "lims", "lims", false);
        make_leaf(dir, "rogue-ca", "rogue-imager-01", "imager-01", false);
        Pki {
            dir: dir.to_path_buf(),
        }
    }

    fn p(&self, f: &str) -> PathBuf {
        self.dir.join(f)
    }

    fn files(&self, ca: &str, client: &str) -> TlsFiles {
        TlsFiles {
            ca: self.p(&format!("{ca}.crt")),
            client_cert: Some(self.p(&format!("{client}.crt"))),
            client_key: Some(self.p(&format!("{client}.key"))),
        }
    }
}

fn tls_broker(dir: &Path, pki: &Pki, port: u16) -> Mosquitto {
    std::fs::write(
        dir.join("acl"),
        "pattern write lumiq/v1/+/%u/#\n\nuser lims\ntopic read lumiq/v1/#\ntopic readwrite lumiq-test/#\n",
    )
    .unwrap();
    let body = format!(
        "listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n\
         use_identity_as_username true\nallow_anonymous false\nacl_file {}\npersistence false\n",
        pki.p("ca.crt").display(),
        pki.p("server.crt").display(),
        pki.p("server.key").display(),
        dir.join("acl").display()
    );
    Mosquitto::start(dir, "mosquitto-tls", port, &body)
}

fn start_publisher(
    rt: &Runtime,
    dir: &Path,
    name: &str,
    instrument: &str,
    port: u16,
    tls: TlsFiles,
) -> PublisherHandle {
    let outbox = Outbox::open(
        dir.join(format!("{name}.sqlite")),
        &OutboxConfig::new(instrument),
    )
    .unwrap();
    let mut broker = BrokerConfig::new("127.0.0.1", port);
    broker.tls = Some(tls);
    broker.keep_alive = Duration::from_secs(5);
    broker.client_id = Some(format!("lumiq-{instrument}-{}", uuid::Uuid::now_v7()));
    let mut cfg = PublisherConfig::new(Topics::new("lumiq/v1", "lab", instrument).unwrap(), broker);
    cfg.reconnect_min = Duration::from_millis(100);
    cfg.reconnect_max = Duration::from_millis(500);
    let _g = rt.handle.enter();
    Publisher::spawn(outbox, cfg).unwrap()
}

#[test]
fn mutual_tls_good_certificate_delivers_wrong_one_refused_outside_topics_detected() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let port = free_port();
    let broker = tls_broker(dir.path(), &pki, port);
    let schemas = Schemas::load();
    let rt = Runtime::new();
    let port_s = port.to_string();
    let tls_args = |cert: &str| {
        s(&[
            "-h",
            "127.0.0.1",
            "-p",
            &port_s,
            "--cafile",
            pki.p("ca.crt").to_str().unwrap(),
            "--cert",
            pki.p(&format!("{cert}.crt")).to_str().unwrap(),
            "--key",
            pki.p(&format!("{cert}.key")).to_str().unwrap(),
        ])
    };
    let mut sub_args = tls_args("lims");
    sub_args.extend(s(&["-q", "1", "-v", "-t", "lumiq/v1/#"]));
    let sub = subscribe_ready(sub_args, &tls_args("lims"));

    // 1. The instrument's own certificate: delivered, every payload valid.
    let good = start_publisher(
        &rt,
        dir.path(),
        "good",
        "imager-01",
        port,
        pki.files("ca", "imager-01"),
    );
    let mut ids = Vec::new();
    for i in 0..5 {
        let r = synthetic::record("imager-01", i);
        good.outbox().commit(&r).unwrap();
        ids.push(r.measurement_id.to_string());
    }
    wait_for(
        Duration::from_secs(15),
        "5 records acknowledged over TLS",
        || good.status().unacked == 0,
    );
    let st = good.status();
    assert_eq!(st.link, LinkState::Connected);
    assert_eq!(st.broker, format!("mqtts://127.0.0.1:{port}"));
    assert_eq!(
        (st.last_seq, st.last_acked_seq, st.refused_by_broker),
        (Some(5), Some(5), 0)
    );
    wait_for(
        Duration::from_secs(5),
        "the subscriber to get 5 records",
        || sub.count_topic_suffix("/imager-01/measurement") >= 5,
    );

    // 2. A certificate for the same CN from another CA: refused, clearly.
    let rogue = start_publisher(
        &rt,
        dir.path(),
        "rogue",
        "imager-01",
        port,
        pki.files("ca", "rogue-imager-01"),
    );
    rogue
        .outbox()
        .commit(&synthetic::record("imager-01", 9))
        .unwrap();
    wait_for(
        Duration::from_secs(10),
        "the rogue certificate's refusal",
        || rogue.status().last_error.is_some(),
    );
    std::thread::sleep(Duration::from_millis(500));
    let st = rogue.status();
    let err = st.last_error.clone().unwrap();
    eprintln!("rogue client certificate: {err}");
    assert_ne!(st.link, LinkState::Connected);
    assert_eq!(st.connections, 0, "never connected");
    assert_eq!((st.unacked, st.acked_since_start), (1, 0));
    assert!(err.contains("TLS handshake failed"), "{err}");
    assert!(err.contains("rejected this client's certificate"), "{err}");

    // 3. We do not trust a broker whose certificate our CA did not sign.
    let wrong_ca = start_publisher(
        &rt,
        dir.path(),
        "wrong-ca",
        "imager-01",
        port,
        pki.files("rogue-ca", "imager-01"),
    );
    wrong_ca
        .outbox()
        .commit(&synthetic::record("imager-01", 10))
        .unwrap();
    wait_for(
        Duration::from_secs(10),
        "the untrusted broker certificate",
        || wrong_ca.status().last_error.is_some(),
    );
    let err = wrong_ca.status().last_error.unwrap();
    eprintln!("untrusted broker certificate: {err}");
    assert!(err.contains("UnknownIssuer"), "{err}");
    assert!(
        err.contains("the broker's certificate is not trusted"),
        "{err}"
    );
    assert_eq!(wrong_ca.status().connections, 0);

    // 4. A good certificate publishing outside its topics (imager-01's certificate configured
    //    as imager-02): the broker's ACL refuses; MQTT 5 says so in the PUBACK.
    let outside = start_publisher(
        &rt,
        dir.path(),
        "outside",
        "imager-02",
        port,
        pki.files("ca", "imager-01"),
    );
    outside
        .outbox()
        .commit(&synthetic::record("imager-02", 0))
        .unwrap();
    wait_for(Duration::from_secs(10), "the ACL refusal", || {
        outside.status().refused_by_broker >= 2
    });
    let st = outside.status();
    let refusal = st.last_refusal.clone().unwrap();
    eprintln!("outside its topics: {refusal}");
    assert_eq!(st.link, LinkState::Connected, "TLS and CONNECT succeed");
    assert!(refusal.contains("NotAuthorized"), "{refusal}");
    assert!(refusal.contains("lumiq/v1/lab/imager-02/"), "{refusal}");
    assert_eq!(st.unacked, 1, "a refused record is not marked delivered");
    assert_eq!(st.acked_since_start, 0);

    // Clean stop of the good publisher: offline status, retained.
    let report = rt.block_on(good.shutdown(Duration::from_secs(5)));
    assert!(report.offline_published);
    wait_for(Duration::from_secs(5), "the offline status", || {
        sub.messages()
            .iter()
            .any(|(t, p)| t.ends_with("imager-01/status") && p.contains("clean_stop"))
    });
    for h in [rogue, wrong_ca, outside] {
        rt.block_on(h.shutdown(Duration::from_secs(1)));
    }

    // Everything the subscriber saw: valid, only imager-01's five ids (no rogue, no imager-02).
    let t = tally(&schemas, &lumiq_messages(&sub));
    let mut got: Vec<&String> = t.received.keys().collect();
    got.sort();
    let mut want: Vec<&String> = ids.iter().collect();
    want.sort();
    assert_eq!(got, want);
    assert!(lumiq_messages(&sub)
        .iter()
        .all(|(t, _)| !t.contains("imager-02")));
    assert!(
        broker.log_text().contains("imager-01"),
        "{}",
        broker.log_text()
    );
}
