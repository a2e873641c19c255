// A corporate PAC file of the usual shape, for trying `diagproxy pac` on loopback:
//   diagproxy pac --upstream-proxy pac:examples/corp.pac --resolve intranet.corp.test:443:10.1.2.3
function FindProxyForURL(url, host) {
  // Internal names and addresses go direct.
  if (isPlainHostName(host) || dnsDomainIs(host, ".corp.test") ||
      isInNet(dnsResolve(host), "10.0.0.0", "255.0.0.0"))
    return "DIRECT";
  // The CDN was exempted from the proxy "for speed" -- a split route.
  if (shExpMatch(host, "*.oaistatic.com"))
    return "DIRECT";
  // Everything else through the proxies, the second if the first is down.
  return "PROXY 127.0.0.1:3128; PROXY 127.0.0.1:3129";
}
