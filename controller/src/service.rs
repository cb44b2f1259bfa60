//! Reading the MetalLB Service annotations (no Kubernetes types: the glue
//! passes `metadata.annotations` and `spec.loadBalancerIP`).

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::allocator::IpFamily;

/// Prefix of the annotations MetalLB v0.12 reads.
pub const PREFIX_UNIVERSE: &str = "metallb.universe.tf/";
/// Prefix of the annotations newer MetalLB reads; accepted too.
pub const PREFIX_IO: &str = "metallb.io/";
/// Suffix of the pool annotation.
pub const ADDRESS_POOL: &str = "address-pool";
/// Suffix of the sharing-key annotation.
pub const ALLOW_SHARED_IP: &str = "allow-shared-ip";
/// Suffix of the requested-IPs annotation (comma-separated).
pub const LOAD_BALANCER_IPS: &str = "loadBalancerIPs";

/// A Service whose annotations or `spec.loadBalancerIP` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not an IP address.
    #[error("{field}: {value:?} is not a valid IP address")]
    InvalidIp {
        /// Where it was read (annotation name or `spec.loadBalancerIP`).
        field: String,
        /// The text.
        value: String,
    },
    /// Two addresses of one family.
    #[error("{field}: {first} and {second} are both {family}; at most one address per family")]
    TwoIpsOfOneFamily {
        /// Where.
        field: String,
        /// Family.
        family: IpFamily,
        /// First address.
        first: IpAddr,
        /// Second address.
        second: IpAddr,
    },
    /// `spec.loadBalancerIP` is not among the annotated IPs.
    #[error("spec.loadBalancerIP {spec} conflicts with annotation {field} ({annotation})")]
    LoadBalancerIpConflict {
        /// `spec.loadBalancerIP`.
        spec: IpAddr,
        /// Annotation name that was used.
        field: String,
        /// Its value.
        annotation: String,
    },
}

/// What [`parse_annotations`] returns: `(requested IPs, address pool, sharing key)`.
pub type Parsed = (Vec<IpAddr>, Option<String>, Option<String>);

/// Reads one annotation as MetalLB v0.13+ does: `metallb.io/<name>` when
/// that key is present (even empty, which then means absent), else
/// `metallb.universe.tf/<name>`. Returns the annotation's full name (for
/// messages) and its trimmed value, `None` when absent or empty.
fn read(annotations: &BTreeMap<String, String>, name: &'static str) -> Option<(String, String)> {
    let io = format!("{PREFIX_IO}{name}");
    let key = if annotations.contains_key(&io) {
        io
    } else {
        format!("{PREFIX_UNIVERSE}{name}")
    };
    let value = annotations.get(&key)?.trim();
    (!value.is_empty()).then(|| (key, value.to_string()))
}

fn parse_ip(field: &str, s: &str) -> Result<IpAddr, RequestError> {
    s.trim().parse().map_err(|_| RequestError::InvalidIp {
        field: field.to_string(),
        value: s.trim().to_string(),
    })
}

/// Reads `address-pool`, `allow-shared-ip` and `loadBalancerIPs` (under
/// `metallb.io/`, which wins when both prefixes are set, or
/// `metallb.universe.tf/`) and `spec.loadBalancerIP`. Returns `(requested IPs, pool, sharing key)`.
///
/// `spec.loadBalancerIP` may be given with the annotation only if it is one of
/// the annotated IPs; the annotation's list then wins.
pub fn parse_annotations(
    annotations: &BTreeMap<String, String>,
    load_balancer_ip: Option<&str>,
) -> Result<Parsed, RequestError> {
    let pool = read(annotations, ADDRESS_POOL).map(|(_, v)| v);
    let sharing = read(annotations, ALLOW_SHARED_IP).map(|(_, v)| v);
    let mut ips: Vec<IpAddr> = Vec::new();
    let annotated = read(annotations, LOAD_BALANCER_IPS);
    if let Some((field, value)) = &annotated {
        for part in value.split(',') {
            let ip = parse_ip(field, part)?;
            if let Some(first) = ips.iter().find(|x| IpFamily::of(x) == IpFamily::of(&ip)) {
                return Err(RequestError::TwoIpsOfOneFamily {
                    field: field.clone(),
                    family: IpFamily::of(&ip),
                    first: *first,
                    second: ip,
                });
            }
            ips.push(ip);
        }
    }
    if let Some(spec) = load_balancer_ip.map(str::trim).filter(|s| !s.is_empty()) {
        let ip = parse_ip("spec.loadBalancerIP", spec)?;
        match &annotated {
            Some((field, value)) if !ips.contains(&ip) => {
                return Err(RequestError::LoadBalancerIpConflict {
                    spec: ip,
                    field: field.clone(),
                    annotation: value.clone(),
                });
            }
            Some(_) => {}
            None => ips.push(ip),
        }
    }
    Ok((ips, pool, sharing))
}
