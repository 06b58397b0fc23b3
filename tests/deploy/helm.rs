//! The Helm chart, rendered and validated.

use std::path::PathBuf;
use std::process::Command;

use crate::{ok, tool};

fn helm() -> Command {
    tool(".tools/bin/helm", "helm")
}

fn render(args: &[&str]) -> PathBuf {
    let mut cmd = helm();
    cmd.args(["template", "t1", "helm/tier1"]).args(args);
    let out = ok(&mut cmd);
    let path = std::env::temp_dir().join(format!(
        "tier1-helm-{}-{}.yaml",
        std::process::id(),
        args.join("_").replace(|c: char| !c.is_ascii_alphanumeric(), "-")
    ));
    std::fs::write(&path, out).unwrap();
    path
}

#[test]
fn helm_chart_lints_renders_both_modes_and_matches_kubernetes_schemas() {
    ok(helm().args(["lint", "--strict", "helm/tier1"]));
    let central = render(&[]);
    let sidecar = render(&["--set", "mode=sidecar"]);
    let scaled = render(&["--set", "autoscaling.enabled=true"]);
    let volumes = [
        "--set-json",
        r#"extraVolumes=[{"name":"redis-tls","secret":{"secretName":"redis-client-tls"}}]"#,
        "--set-json",
        r#"extraVolumeMounts=[{"name":"redis-tls","mountPath":"/etc/tier1-tls/redis","readOnly":true}]"#,
    ];
    let mounted = render(&volumes);
    let mounted_sidecar = render(&[&volumes[..], &["--set", "mode=sidecar"]].concat());
    for f in [&central, &sidecar, &scaled, &mounted, &mounted_sidecar] {
        let out = ok(tool(".tools/py/bin/kubernetes-validate", "kubernetes-validate").arg("--strict").arg(f));
        assert!(!out.contains("ERROR"), "{out}");
    }
    let central = std::fs::read_to_string(central).unwrap();
    for kind in
        ["kind: Deployment", "kind: Service", "kind: ConfigMap", "kind: Secret", "kind: PodDisruptionBudget"]
    {
        assert!(central.contains(kind), "central mode lacks {kind}");
    }
    for needle in [
        "path: /healthz",
        "path: /readyz",
        "readOnlyRootFilesystem: true",
        "runAsNonRoot: true",
        "drop: [\"ALL\"]",
        "preStop:",
        "terminationGracePeriodSeconds: 45",
    ] {
        assert!(central.contains(needle), "central mode lacks {needle}");
    }
    // No config checksum on the pods: a ConfigMap edit reloads in place instead of restarting them.
    assert!(!central.contains("checksum/config"));
    let sidecar = std::fs::read_to_string(sidecar).unwrap();
    assert!(sidecar.contains("\"--listen\", \"127.0.0.1:8080\""), "{sidecar}");
    assert!(sidecar.contains("BIFROST_BASE_URL"));
    assert!(!sidecar.contains("kind: Service\n"), "sidecar mode renders no Service");
    assert!(std::fs::read_to_string(scaled).unwrap().contains("kind: HorizontalPodAutoscaler"));
    // Extra volumes (certificates for rediss://, server TLS, provider CAs) reach the pod and the
    // tier1 container, in both modes.
    for f in [mounted, mounted_sidecar] {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(text.contains("secretName: redis-client-tls"), "{text}");
        assert!(text.contains("mountPath: /etc/tier1-tls/redis"), "{text}");
    }
}
