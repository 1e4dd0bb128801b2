//! Where the probe may connect. Anyone who may create a StreamInstance chooses the URLs the
//! operator fetches, so every connection is checked:
//!
//! - the scheme is `http` or `https`;
//! - the host (and port) is the master playlist's own, or one the instance's
//!   [`Destinations`] allow (renditions and redirects alike);
//! - the **resolved address of every connection** (redirect hops included) is public: link-local
//!   and cloud metadata addresses (169.254.0.0/16, fe80::/10, fd00:ec2::254), unspecified,
//!   multicast, broadcast and reserved ranges are refused always; loopback and private ranges
//!   (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7) only unless the operator runs with
//!   `--allow-private-origins` (tests and the local demo). IPv4 addresses embedded in IPv6
//!   (mapped, compatible, NAT64, 6to4) are judged as the IPv4 address.
//!
//! Names are checked by a resolver hook in the HTTP client ([`GuardedResolver`]), so what is
//! judged is the address connected to, not a string; IP-literal hosts, which the client does
//! not resolve, are checked before each request. A refusal is a stale reason of its own
//! (`DestinationRefused`).

use super::credentials::OriginCredentials;
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// What kind of address an IP is, for the connection policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressClass {
    Public,
    Loopback,
    Private,
    /// Link-local, including the cloud metadata endpoints (169.254.169.254).
    LinkLocal,
    /// The AWS IPv6 metadata endpoint, fd00:ec2::254.
    Metadata,
    Unspecified,
    Multicast,
    Broadcast,
    /// Documentation, benchmarking and other reserved ranges.
    Reserved,
}

impl AddressClass {
    pub fn as_str(self) -> &'static str {
        match self {
            AddressClass::Public => "public",
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private",
            AddressClass::LinkLocal => "link-local",
            AddressClass::Metadata => "metadata",
            AddressClass::Unspecified => "unspecified",
            AddressClass::Multicast => "multicast",
            AddressClass::Broadcast => "broadcast",
            AddressClass::Reserved => "reserved",
        }
    }
}

/// Classifies an address.
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let o = ip.octets();
    if ip.is_unspecified() || o[0] == 0 {
        AddressClass::Unspecified
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if ip.is_link_local() {
        AddressClass::LinkLocal
    } else if ip.is_broadcast() {
        AddressClass::Broadcast
    } else if ip.is_multicast() {
        AddressClass::Multicast
    } else if ip.is_private() || (o[0] == 100 && (o[1] & 0xC0) == 64) {
        // RFC 1918, and the shared address space of carrier-grade NAT (100.64.0.0/10).
        AddressClass::Private
    } else if ip.is_documentation()
        || o[0] >= 240
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)
        || (o[0] == 198 && (o[1] & 0xFE) == 18)
    {
        AddressClass::Reserved
    } else {
        AddressClass::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    const METADATA: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);
    let s = ip.segments();
    if ip == METADATA {
        return AddressClass::Metadata;
    }
    if ip.is_unspecified() {
        return AddressClass::Unspecified;
    }
    if ip.is_loopback() {
        return AddressClass::Loopback;
    }
    // IPv4 inside IPv6: mapped (::ffff:a.b.c.d), compatible (::a.b.c.d), NAT64 (64:ff9b::/96).
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        return classify_v4(v4);
    }
    // 6to4 (2002::/16) carries an IPv4 address in its next 32 bits.
    if s[0] == 0x2002 {
        let v4 = Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
        let class = classify_v4(v4);
        if class != AddressClass::Public {
            return class;
        }
    }
    if (s[0] & 0xffc0) == 0xfe80 {
        AddressClass::LinkLocal
    } else if (s[0] & 0xfe00) == 0xfc00 {
        AddressClass::Private
    } else if ip.is_multicast() {
        AddressClass::Multicast
    } else if s[0] == 0x2001 && s[1] == 0x0db8 {
        AddressClass::Reserved
    } else {
        AddressClass::Public
    }
}

/// Whether the probe may connect to `ip`: public always; loopback and private only when
/// `allow_private`; never anything else.
pub fn allowed(ip: IpAddr, allow_private: bool) -> Result<(), AddressClass> {
    match classify(ip) {
        AddressClass::Public => Ok(()),
        AddressClass::Loopback | AddressClass::Private if allow_private => Ok(()),
        other => Err(other),
    }
}

/// The error a refused connection carries through the HTTP client.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// The HTTP client's resolver: resolves with the system resolver, then keeps only the addresses
/// the policy allows, so the client never connects anywhere else.
#[derive(Clone, Debug)]
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let kept: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|a| match allowed(a.ip(), allow_private) {
                    Ok(()) => true,
                    Err(class) => {
                        refused = Some(class);
                        false
                    }
                })
                .collect();
            if kept.is_empty() {
                let why = refused.map(AddressClass::as_str).unwrap_or("no");
                return Err(Box::new(Refused(format!(
                    "{host} resolves only to {why} addresses, which the operator does not probe"
                )))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

/// The hosts one instance's probes may reach: its master's own host and port, plus the hosts
/// its ClusteredStream allows (`host` for any port, or `host:port`); and the origin credentials
/// sent to them, if any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Destinations {
    hosts: Vec<String>,
    credentials: Option<std::sync::Arc<OriginCredentials>>,
}

fn authority(url: &Url) -> Option<(String, u16)> {
    let host = url.host_str()?.trim_end_matches('.').to_ascii_lowercase();
    Some((host, url.port_or_known_default()?))
}

impl Destinations {
    /// `master`'s host and port, plus `extra` entries (`host` or `host:port`, case-insensitive).
    pub fn new(master: &Url, extra: &[String]) -> Self {
        let mut hosts: Vec<String> = extra
            .iter()
            .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        if let Some((host, port)) = authority(master) {
            hosts.push(format!("{host}:{port}"));
        }
        Self {
            hosts,
            credentials: None,
        }
    }

    /// Allows every http(s) host: for tools and tests that probe without a master.
    pub fn any() -> Self {
        Self {
            hosts: vec!["*".into()],
            credentials: None,
        }
    }

    /// These destinations, with `credentials` sent to them (see [`Self::credentials_for`]).
    pub fn with_credentials(
        mut self,
        credentials: Option<std::sync::Arc<OriginCredentials>>,
    ) -> Self {
        self.credentials = credentials;
        self
    }

    /// The credentials to send with a request to `url`, reached from `first` (the URL the
    /// request started at) through redirects that never left `first`'s origin when
    /// `same_origin_so_far`. Credentials go only to an allowed host, and follow a redirect only
    /// while it stays on the same scheme, host and port: a redirect to another host (even an
    /// allowed one, a CDN) or from https to http never carries them.
    pub fn credentials_for(
        &self,
        first: &Url,
        url: &Url,
        same_origin_so_far: bool,
    ) -> Option<&OriginCredentials> {
        let credentials = self.credentials.as_deref()?;
        let allowed = self.check(url).is_ok();
        (allowed && same_origin_so_far && same_origin(first, url)).then_some(credentials)
    }
}

/// Whether two URLs share scheme, host and port.
pub fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme() && authority(a).is_some() && authority(a) == authority(b)
}

impl Destinations {
    /// Checks the scheme and host of `url` (addresses are the resolver's and [`check_literal`]'s
    /// business).
    pub fn check(&self, url: &Url) -> Result<(), Refused> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refused(format!(
                "{}: URLs are not probed (http and https only)",
                url.scheme()
            )));
        }
        let Some((host, port)) = authority(url) else {
            return Err(Refused("a URL without a host".into()));
        };
        let with_port = format!("{host}:{port}");
        // IPv6 hosts come bracketed from host_str(); entries may be written either way.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let ok = self.hosts.iter().any(|h| {
            h == "*"
                || *h == host
                || *h == with_port
                || h.trim_start_matches('[').trim_end_matches(']') == bare
        });
        if ok {
            Ok(())
        } else {
            Err(Refused(format!(
                "host {with_port} is neither the master's nor one the ClusteredStream allows"
            )))
        }
    }
}

/// Checks an IP-literal host, which the HTTP client connects to without resolving.
pub fn check_literal(url: &Url, allow_private: bool) -> Result<(), Refused> {
    // host_str() is normalised by the URL parser: IPv4 in dotted decimal (`0x7f.1` becomes
    // 127.0.0.1), IPv6 in brackets.
    let host = url.host_str().unwrap_or("");
    let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    else {
        return Ok(());
    };
    allowed(ip, allow_private).map_err(|class| {
        Refused(format!(
            "{ip} is a {} address, which the operator does not probe",
            class.as_str()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(s: &str) -> AddressClass {
        classify(s.parse().unwrap())
    }

    #[test]
    fn every_address_class() {
        for (ip, want) in [
            ("93.184.216.34", AddressClass::Public),
            ("2606:4700::1111", AddressClass::Public),
            ("127.0.0.1", AddressClass::Loopback),
            ("127.0.0.2", AddressClass::Loopback),
            ("::1", AddressClass::Loopback),
            ("10.1.2.3", AddressClass::Private),
            ("172.16.0.1", AddressClass::Private),
            ("172.31.255.255", AddressClass::Private),
            ("192.168.1.1", AddressClass::Private),
            ("100.64.0.1", AddressClass::Private),
            ("fc00::1", AddressClass::Private),
            ("fd12:3456::1", AddressClass::Private),
            ("169.254.169.254", AddressClass::LinkLocal),
            ("169.254.0.1", AddressClass::LinkLocal),
            ("fe80::1", AddressClass::LinkLocal),
            ("fd00:ec2::254", AddressClass::Metadata),
            ("0.0.0.0", AddressClass::Unspecified),
            ("0.1.2.3", AddressClass::Unspecified),
            ("::", AddressClass::Unspecified),
            ("224.0.0.1", AddressClass::Multicast),
            ("ff02::1", AddressClass::Multicast),
            ("255.255.255.255", AddressClass::Broadcast),
            ("192.0.2.1", AddressClass::Reserved),
            ("198.18.0.1", AddressClass::Reserved),
            ("240.0.0.1", AddressClass::Reserved),
            ("2001:db8::1", AddressClass::Reserved),
            // IPv4 inside IPv6 is judged as the IPv4 address.
            ("::ffff:169.254.169.254", AddressClass::LinkLocal),
            ("::ffff:127.0.0.1", AddressClass::Loopback),
            ("::ffff:10.0.0.1", AddressClass::Private),
            ("::ffff:93.184.216.34", AddressClass::Public),
            ("64:ff9b::a9fe:a9fe", AddressClass::LinkLocal),
            ("::a9fe:a9fe", AddressClass::LinkLocal),
            ("2002:a9fe:a9fe::1", AddressClass::LinkLocal),
            ("2002:7f00:1::1", AddressClass::Loopback),
        ] {
            assert_eq!(class(ip), want, "{ip}");
        }
    }

    #[test]
    fn the_flag_opens_loopback_and_private_only() {
        for ip in ["127.0.0.1", "::1", "10.0.0.1", "192.168.0.1", "fc00::1"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(allowed(ip, false).is_err(), "{ip}");
            assert!(allowed(ip, true).is_ok(), "{ip}");
        }
        for ip in [
            "169.254.169.254",
            "fd00:ec2::254",
            "fe80::1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::ffff:169.254.169.254",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(allowed(ip, true).is_err(), "{ip}");
        }
        assert!(allowed("8.8.8.8".parse().unwrap(), false).is_ok());
    }

    #[test]
    fn only_the_masters_host_and_allowed_hosts() {
        let master = Url::parse("https://Origin.Example.com/live/master.m3u8").unwrap();
        let d = Destinations::new(&master, &["cdn.example.net".into(), "10.0.0.5:8080".into()]);
        let ok = |u: &str| d.check(&Url::parse(u).unwrap()).is_ok();
        assert!(ok("https://origin.example.com/live/720p.m3u8"));
        assert!(ok("https://origin.example.com:443/x"));
        assert!(!ok("https://origin.example.com:8443/x"), "another port");
        assert!(
            !ok("http://origin.example.com/x"),
            "port 80 is another port"
        );
        assert!(
            ok("http://cdn.example.net:81/x"),
            "an allowed host, any port"
        );
        assert!(ok("http://10.0.0.5:8080/x"));
        assert!(!ok("http://10.0.0.5:8081/x"));
        assert!(!ok("https://evil.example.org/x"));
        assert!(!ok("ftp://origin.example.com/x"));
        assert!(!ok("file:///etc/passwd"));
        let v6 = Destinations::new(&Url::parse("http://[::1]:9000/m.m3u8").unwrap(), &[]);
        assert!(
            v6.check(&Url::parse("http://[::1]:9000/v.m3u8").unwrap())
                .is_ok()
        );
        assert!(
            v6.check(&Url::parse("http://[::2]:9000/v.m3u8").unwrap())
                .is_err()
        );
    }

    #[test]
    fn credentials_go_to_allowed_hosts_and_never_follow_a_redirect_elsewhere() {
        use super::super::credentials::OriginCredentials;
        let u = |s: &str| Url::parse(s).unwrap();
        let master = u("https://origin.example.com/live/master.m3u8");
        let creds = std::sync::Arc::new(OriginCredentials {
            name: reqwest::header::AUTHORIZATION,
            value: reqwest::header::HeaderValue::from_static("Bearer t"),
            scheme: "Bearer",
        });
        let d =
            Destinations::new(&master, &["cdn.example.net".into()]).with_credentials(Some(creds));
        let send = |first: &str, url: &str, same: bool| {
            d.credentials_for(&u(first), &u(url), same).is_some()
        };
        // The master's host, and a rendition listed on an allowed host.
        assert!(send(master.as_str(), master.as_str(), true));
        assert!(send(
            "https://cdn.example.net/v.m3u8",
            "https://cdn.example.net/v.m3u8",
            true
        ));
        // A redirect on the same origin keeps them; to another host (allowed or not), to
        // another port, or from https to http, drops them; and once dropped they stay dropped.
        assert!(send(
            master.as_str(),
            "https://origin.example.com/other/v.m3u8",
            true
        ));
        assert!(!send(
            master.as_str(),
            "https://cdn.example.net/v.m3u8",
            true
        ));
        assert!(!send(
            master.as_str(),
            "https://evil.example.org/v.m3u8",
            true
        ));
        assert!(!send(
            master.as_str(),
            "https://origin.example.com:8443/v.m3u8",
            true
        ));
        assert!(!send(
            master.as_str(),
            "http://origin.example.com/v.m3u8",
            true
        ));
        assert!(!send(master.as_str(), master.as_str(), false));
        // A host that is not allowed never gets them, not even as the first URL.
        assert!(!send(
            "https://evil.example.org/x",
            "https://evil.example.org/x",
            true
        ));
        // Without credentials nothing is sent.
        let none = Destinations::new(&master, &[]);
        assert!(none.credentials_for(&master, &master, true).is_none());
    }

    #[test]
    fn ip_literals_are_checked_before_connecting() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert!(check_literal(&u("http://169.254.169.254/latest/meta-data/"), true).is_err());
        assert!(check_literal(&u("http://[fd00:ec2::254]/"), true).is_err());
        assert!(check_literal(&u("http://127.0.0.1:8080/"), false).is_err());
        assert!(check_literal(&u("http://127.0.0.1:8080/"), true).is_ok());
        assert!(
            check_literal(&u("http://0x7f.1/"), false).is_err(),
            "parsed as 127.0.0.1"
        );
        assert!(check_literal(&u("http://origin.example.com/"), false).is_ok());
    }

    #[tokio::test]
    async fn the_resolver_keeps_only_allowed_addresses() {
        let name = |s: &str| s.parse::<Name>().unwrap();
        let guarded = GuardedResolver {
            allow_private: false,
        };
        let err = match guarded.resolve(name("localhost")).await {
            Ok(_) => panic!("localhost must be refused"),
            Err(e) => e,
        };
        assert!(err.to_string().contains("loopback"), "{err}");
        let open = GuardedResolver {
            allow_private: true,
        };
        let addrs: Vec<SocketAddr> = open.resolve(name("localhost")).await.unwrap().collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty());
    }
}
