// libFuzzer target for src/core/retry_policy: parse_retry_after_ms and classify() on arbitrary
// Retry-After values and response details.
//
//   parse_retry_after_ms never crashes, never exceeds the ceiling, is non-increasing in now,
//   returns nullopt for empty/signed/fractional values, parses delta-seconds exactly, and for a
//   well-formed IMF-fixdate or asctime date gives the wait a calendar computed here independently
//   of libcurl would give.
//   classify keeps delay_ms within max_ms and its reason printable ASCII of bounded length.
//
// The whole input is the header value; it is tried against several clocks and ceilings.
// Built and run by scripts/fuzz.sh.
#include "fuzz_common.hpp"
#include "core/retry_policy.hpp"

#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

namespace {

namespace retry = pg_sync::retry;

constexpr std::int64_t kNows[] = {std::numeric_limits<std::int64_t>::min(), -1, 0, 784111777, 1700000000,
                                  std::numeric_limits<std::int64_t>::max()};
constexpr std::uint64_t kCeilings[] = {0, 999, retry::kMaxDelayMs, std::numeric_limits<std::uint64_t>::max()};

bool space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }
bool digit(char c) { return c >= '0' && c <= '9'; }

std::string_view trim(std::string_view s) {
    while (!s.empty() && space(s.front()))
        s.remove_prefix(1);
    while (!s.empty() && space(s.back()))
        s.remove_suffix(1);
    return s;
}

std::uint64_t clamp_seconds(std::uint64_t seconds, std::uint64_t ceiling) {
    return seconds > ceiling / 1000 ? ceiling : seconds * 1000;
}

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
    const auto yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

int lookup(std::string_view word, const char *const *names, int count) {
    for (int i = 0; i < count; ++i)
        if (word == names[i])
            return i;
    return -1;
}

int number(std::string_view s) {
    int v = 0;
    for (char c : s) {
        if (!digit(c))
            return -1;
        v = v * 10 + (c - '0');
    }
    return v;
}

// Unix seconds of a well-formed, calendar-valid IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") or
// asctime date ("Sun Nov  6 08:49:37 1994") in years 1970..9999; nullopt for anything else.
std::optional<std::int64_t> reference_date(std::string_view s) {
    static const char *const days[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    std::string_view wday, mon, mday, year, hh, mm, ss;
    if (s.size() == 29 && s.substr(3, 2) == ", " && s[7] == ' ' && s[11] == ' ' && s[16] == ' ' &&
        s[19] == ':' && s[22] == ':' && s.substr(25) == " GMT") {
        wday = s.substr(0, 3), mday = s.substr(5, 2), mon = s.substr(8, 3), year = s.substr(12, 4);
        hh = s.substr(17, 2), mm = s.substr(20, 2), ss = s.substr(23, 2);
    } else if (s.size() == 24 && s[3] == ' ' && s[7] == ' ' && s[10] == ' ' && s[13] == ':' && s[16] == ':' &&
               s[19] == ' ') {
        wday = s.substr(0, 3), mon = s.substr(4, 3), mday = s.substr(8, 2), year = s.substr(20, 4);
        hh = s.substr(11, 2), mm = s.substr(14, 2), ss = s.substr(17, 2);
        if (mday[0] == ' ')
            mday.remove_prefix(1);
    } else {
        return std::nullopt;
    }
    const int m = lookup(mon, months, 12);
    const int d = number(mday), y = number(year), h = number(hh), mi = number(mm), se = number(ss);
    if (lookup(wday, days, 7) < 0 || m < 0 || d < 1 || y < 1970 || y > 9999 || h < 0 || h > 23 || mi < 0 ||
        mi > 59 || se < 0 || se > 59)
        return std::nullopt;
    static const int month_days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > month_days[m] + (m == 1 && leap ? 1 : 0))
        return std::nullopt;
    return days_from_civil(y, static_cast<unsigned>(m + 1), static_cast<unsigned>(d)) * 86400 + h * 3600 +
           mi * 60 + se;
}

void check_parse(std::string_view value) {
    const std::string_view t = trim(value);
    bool all_digits = !t.empty();
    for (char c : t)
        all_digits = all_digits && digit(c);
    std::optional<std::uint64_t> delta;
    if (all_digits) {
        std::uint64_t v = 0;
        bool fits = true;
        for (char c : t) {
            const auto dg = static_cast<std::uint64_t>(c - '0');
            if (v > (std::numeric_limits<std::uint64_t>::max() - dg) / 10) {
                fits = false;
                break;
            }
            v = v * 10 + dg;
        }
        if (fits)
            delta = v;
    }
    const bool must_be_null = t.empty() || t.front() == '+' || t.front() == '-' ||
                              t.find('.') != std::string_view::npos ||
                              t.find('\0') != std::string_view::npos || (all_digits && !delta);
    const std::optional<std::int64_t> date = all_digits ? std::nullopt : reference_date(t);

    for (const std::uint64_t ceiling : kCeilings) {
        std::optional<std::uint64_t> previous;
        for (const std::int64_t now : kNows) { // increasing
            const std::optional<std::uint64_t> r = retry::parse_retry_after_ms(value, now, ceiling);
            if (r)
                FUZZ_CHECK(*r <= ceiling, "Retry-After wait is within the ceiling");
            if (must_be_null)
                FUZZ_CHECK(!r, "empty, signed, fractional or oversized value gives nullopt");
            if (delta)
                FUZZ_CHECK(r && *r == clamp_seconds(*delta, ceiling), "delta-seconds parsed exactly");
            if (date) {
                const std::uint64_t expect =
                    *date <= now ? 0
                                 : clamp_seconds(static_cast<std::uint64_t>(*date) - static_cast<std::uint64_t>(now),
                                                 ceiling);
                if (!r || *r != expect) {
                    std::fprintf(stderr, "date \"%.*s\" now=%lld ceiling=%llu: got %s%llu, expected %llu\n",
                                 static_cast<int>(t.size()), t.data(), static_cast<long long>(now),
                                 static_cast<unsigned long long>(ceiling), r ? "" : "nullopt/",
                                 static_cast<unsigned long long>(r ? *r : 0),
                                 static_cast<unsigned long long>(expect));
                    std::abort();
                }
            }
            if (previous && r)
                FUZZ_CHECK(*r <= *previous, "a later now never asks for a longer wait");
            FUZZ_CHECK(previous.has_value() == r.has_value() || now == kNows[0],
                       "whether a value parses does not depend on now");
            previous = r;
        }
    }
}

bool printable_ascii(const std::string &s) {
    for (char c : s)
        if (c < 0x20 || c >= 0x7f)
            return false;
    return true;
}

void check_classify(std::string_view value, const std::uint8_t *data, std::size_t size) {
    static const int statuses[] = {429, 503, 410, 200, 299, 500, 302, 101, 99, 600, INT_MIN, INT_MAX};
    const retry::Policy policies[] = {{}, {1, 1, 1, {}}, {5000, 1000, 3, {}}, {0, 0, 2, {}}};
    const std::uint8_t b = size > 0 ? data[0] : 0;
    const int attempt = static_cast<int>(size % 13) - 1;
    const retry::Random random = retry::make_random(size);
    for (const retry::Policy &policy : policies) {
        for (const int status : statuses) {
            const retry::Transport transport =
                status == 500 ? static_cast<retry::Transport>(b % (int(retry::Transport::Other) + 1))
                              : retry::Transport::Ok;
            const retry::Response response{transport, status, value, value};
            const retry::Outcome o =
                retry::classify(response, attempt, policy, 1700000000, (b & 1) ? random : retry::Random());
            FUZZ_CHECK(printable_ascii(o.reason), "reason is printable ASCII");
            FUZZ_CHECK(o.reason.size() <= 400, "reason is bounded");
            FUZZ_CHECK(o.delay_ms <= policy.max_ms, "delay within max_ms");
            const bool ok = transport == retry::Transport::Ok;
            if (transport == retry::Transport::Delivered)
                FUZZ_CHECK(o.verdict == retry::Verdict::Success, "records delivered are success");
            else if (transport == retry::Transport::Rejected)
                FUZZ_CHECK(o.verdict == retry::Verdict::DeadLetter, "records refused for good are dead letters");
            else if (ok && status >= 200 && status < 300)
                FUZZ_CHECK(o.verdict == retry::Verdict::Success && o.reason.empty(), "2xx is success");
            else if (ok && status == 410)
                FUZZ_CHECK(o.verdict == retry::Verdict::Gone, "410 is gone");
            else
                FUZZ_CHECK(o.verdict == (attempt >= policy.max_attempts ? retry::Verdict::DeadLetter
                                                                       : retry::Verdict::Retry),
                           "failure verdict follows max_attempts");
            if (o.retry_after_used)
                FUZZ_CHECK(ok && (status == 429 || status == 503), "Retry-After only on 429/503");
        }
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    const std::string_view value(reinterpret_cast<const char *>(data), size);
    check_parse(value);
    check_classify(value, data, size);
    return 0;
}
