// The standard PAC helpers (Netscape's "Navigator Proxy Auto-Config File Format", 1996, and
// Microsoft's IPv6 extensions, the `Ex` functions), written for diagproxy. `__dnsResolve`,
// `dnsResolveEx`, `myIpAddress`, `myIpAddressEx` and `__record` are native (Rust); the rest
// is plain JavaScript here, evaluated once before the PAC script.

// The first IPv4 address of `host`, or null (Netscape's definition).
function dnsResolve(host) {
  if (host === null || host === undefined) return null;
  var ip = __dnsResolve(host);
  return ip === "" ? null : ip;
}

function isPlainHostName(host) {
  return String(host).indexOf(".") < 0;
}

function dnsDomainIs(host, domain) {
  host = String(host).toLowerCase();
  domain = String(domain).toLowerCase();
  return host.length >= domain.length &&
    host.substring(host.length - domain.length) === domain;
}

function localHostOrDomainIs(host, hostdom) {
  host = String(host).toLowerCase();
  hostdom = String(hostdom).toLowerCase();
  return host === hostdom || hostdom.lastIndexOf(host + ".", 0) === 0;
}

function isResolvable(host) {
  return dnsResolve(host) !== null;
}

function isResolvableEx(host) {
  return dnsResolveEx(host) !== "";
}

function dnsDomainLevels(host) {
  return String(host).split(".").length - 1;
}

function __ipv4(text) {
  var m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(String(text));
  if (m === null) return null;
  var n = 0;
  for (var i = 1; i <= 4; i++) {
    var part = Number(m[i]);
    if (part > 255) return null;
    n = n * 256 + part;
  }
  return n;
}

function isInNet(host, pattern, mask) {
  if (host === null || host === undefined) return false;
  var ip = __ipv4(host);
  if (ip === null) {
    var resolved = dnsResolve(host);
    if (resolved === null) return false;
    ip = __ipv4(resolved);
    if (ip === null) return false;
  }
  var p = __ipv4(pattern), m = __ipv4(mask);
  if (p === null || m === null) return false;
  // Unsigned arithmetic: JavaScript's bitwise operators are signed 32-bit.
  return ((ip & m) >>> 0) === ((p & m) >>> 0);
}

// An IPv6 address as eight 16-bit groups, or null.
function __ipv6(text) {
  text = String(text);
  if (text.indexOf(":") < 0) return null;
  var v4 = null, m = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (m !== null) {
    v4 = __ipv4(m[2]);
    if (v4 === null) return null;
    text = m[1] + "0:0";
  }
  var halves = text.split("::");
  if (halves.length > 2) return null;
  var parse = function (s) { return s === "" ? [] : s.split(":"); };
  var head = parse(halves[0]), tail = halves.length === 2 ? parse(halves[1]) : [];
  var missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return null;
  var groups = head.concat(new Array(halves.length === 2 ? missing : 0).fill("0"), tail);
  var out = [];
  for (var i = 0; i < 8; i++) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(groups[i])) return null;
    out.push(parseInt(groups[i], 16));
  }
  if (v4 !== null) { out[6] = Math.floor(v4 / 65536); out[7] = v4 % 65536; }
  return out;
}

// Bits of an address, IPv4 as 32 and IPv6 as 128, or null.
function __bits(text) {
  var v4 = __ipv4(text), bits = "";
  if (v4 !== null) return ("00000000000000000000000000000000" + v4.toString(2)).slice(-32);
  var v6 = __ipv6(text);
  if (v6 === null) return null;
  for (var i = 0; i < 8; i++) bits += ("0000000000000000" + v6[i].toString(2)).slice(-16);
  return bits;
}

function isInNetEx(host, prefix) {
  var slash = String(prefix).split("/");
  if (slash.length !== 2 || !/^\d+$/.test(slash[1])) return false;
  var net = __bits(slash[0]), len = Number(slash[1]);
  var addr = __bits(host);
  if (addr === null) {
    var resolved = dnsResolveEx(host).split(";");
    for (var i = 0; i < resolved.length; i++) {
      if (resolved[i] !== "" && isInNetEx(resolved[i], prefix)) return true;
    }
    return false;
  }
  if (net === null || addr.length !== net.length || len > net.length) return false;
  return addr.substring(0, len) === net.substring(0, len);
}

function sortIpAddressList(list) {
  var items = String(list).split(";").filter(function (s) { return s !== ""; });
  if (items.length === 0) return false;
  for (var i = 0; i < items.length; i++) if (__bits(items[i]) === null) return false;
  // IPv6 before IPv4 (RFC 3484's preference), each family in address order.
  items.sort(function (a, b) {
    var x = __bits(a), y = __bits(b);
    if (x.length !== y.length) return y.length - x.length;
    return x < y ? -1 : x > y ? 1 : 0;
  });
  return items.join(";");
}

function getClientVersion() {
  return "1.0";
}

// Compiled patterns, by pattern (a script's patterns are few; the map starts again empty
// past 1000).
var __patterns = {}, __patternCount = 0;

function shExpMatch(text, pattern) {
  pattern = String(pattern);
  var re = __patterns[pattern];
  if (re === undefined) {
    if (__patternCount >= 1000) { __patterns = {}; __patternCount = 0; }
    re = new RegExp("^" + pattern.replace(/[.+^${}()|[\]\\\/]/g, "\\$&")
      .replace(/\*/g, ".*").replace(/\?/g, ".") + "$");
    __patterns[pattern] = re;
    __patternCount++;
  }
  return re.test(String(text));
}

var __days = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
var __months = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];

// The arguments without a trailing "GMT", and whether it was there.
function __gmt(args) {
  var list = Array.prototype.slice.call(args);
  var gmt = list.length > 0 && list[list.length - 1] === "GMT";
  if (gmt) list.pop();
  return { list: list, gmt: gmt, now: new Date() };
}

function weekdayRange(start, end) {
  var a = __gmt(arguments);
  var today = a.gmt ? a.now.getUTCDay() : a.now.getDay();
  var from = __days.indexOf(String(a.list[0]).toUpperCase());
  var to = a.list.length > 1 ? __days.indexOf(String(a.list[1]).toUpperCase()) : from;
  if (from < 0 || to < 0) return false;
  return from <= to ? from <= today && today <= to : today >= from || today <= to;
}

// Wraps round (e.g. NOV to FEB, 22 to 6) when `from` is after `to`.
function __within(value, from, to) {
  return from <= to ? from <= value && value <= to : value >= from || value <= to;
}

function dateRange() {
  var a = __gmt(arguments), d = a.now, list = a.list;
  var day = a.gmt ? d.getUTCDate() : d.getDate();
  var month = a.gmt ? d.getUTCMonth() : d.getMonth();
  var year = a.gmt ? d.getUTCFullYear() : d.getFullYear();
  // Each argument is a day (1-31), a month name or a year (four digits).
  var parts = list.map(function (x) {
    var m = __months.indexOf(String(x).toUpperCase());
    if (m >= 0) return { kind: "month", value: m };
    var n = Number(x);
    if (!isFinite(n)) return { kind: "bad" };
    return n > 31 ? { kind: "year", value: n } : { kind: "day", value: n };
  });
  if (parts.length === 0 || parts.some(function (p) { return p.kind === "bad"; })) return false;
  var now = { day: day, month: month, year: year };
  if (parts.length === 1) return parts[0].value === now[parts[0].kind];
  if (parts.length % 2 !== 0) return false;
  var half = parts.length / 2;
  var fields = function (ps) {
    var v = {};
    ps.forEach(function (p) { v[p.kind] = p.value; });
    return v;
  };
  var from = fields(parts.slice(0, half)), to = fields(parts.slice(half));
  var kinds = Object.keys(from).sort().join();
  if (kinds !== Object.keys(to).sort().join() || Object.keys(from).length !== half) return false;
  // Compare as one number of the fields given: year, then month, then day.
  var key = function (v) {
    return ["year", "month", "day"].reduce(function (k, kind) {
      return kind in from ? k * 10000 + v[kind] : k;
    }, 0);
  };
  return __within(key(now), key(from), key(to));
}

function timeRange() {
  var a = __gmt(arguments), d = a.now, list = a.list.map(Number);
  var h = a.gmt ? d.getUTCHours() : d.getHours();
  var m = a.gmt ? d.getUTCMinutes() : d.getMinutes();
  var s = a.gmt ? d.getUTCSeconds() : d.getSeconds();
  if (list.some(function (x) { return !isFinite(x); })) return false;
  var now, from, to;
  switch (list.length) {
    case 1: return h === list[0];
    case 2: now = h; from = list[0]; to = list[1]; break;
    case 4: now = h * 60 + m; from = list[0] * 60 + list[1]; to = list[2] * 60 + list[3]; break;
    case 6:
      now = h * 3600 + m * 60 + s;
      from = list[0] * 3600 + list[1] * 60 + list[2];
      to = list[3] * 3600 + list[4] * 60 + list[5];
      break;
    default: return false;
  }
  return __within(now, from, to);
}

function alert(message) {
  __record("alert(" + JSON.stringify(String(message)) + ")");
}

var __recorded = 0;

// Every helper call is recorded (the first 64 per lookup) for `diagproxy pac`.
(function () {
  var traced = ["isPlainHostName", "dnsDomainIs", "localHostOrDomainIs", "isResolvable",
    "isResolvableEx", "isInNet", "isInNetEx", "dnsResolve", "dnsResolveEx", "myIpAddress",
    "myIpAddressEx", "dnsDomainLevels", "shExpMatch", "weekdayRange", "dateRange",
    "timeRange", "sortIpAddressList"];
  traced.forEach(function (name) {
    var inner = globalThis[name];
    globalThis[name] = function () {
      var result = inner.apply(this, arguments);
      if (__recorded < 64) {
        __recorded++;
        var args = Array.prototype.slice.call(arguments).map(function (x) {
          return JSON.stringify(x);
        });
        __record(name + "(" + args.join(", ") + ") = " + JSON.stringify(result));
      }
      return result;
    };
  });
})();
