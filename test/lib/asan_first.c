/*
 * Preloaded after libasan into a postgres that is not itself instrumented (scripts/sanitize.sh):
 * makes AddressSanitizer initialise outside glibc's gettext and locale locks.
 *
 * Why: an uninstrumented executable has no .preinit_array entry calling __asan_init, so ASan
 * initialises on the first malloc. In postgres that is libgpg-error's constructor, which runs
 * before libasan's own and calls bindtextdomain(): the malloc happens with _nl_state_lock
 * write-held, ASan's initialisation calls dlerror(), dlerror() calls gettext, which takes and
 * releases the same lock. The lock is corrupt from then on and postgres hangs in its first
 * bindtextdomain() (psql likewise in freelocale() at exit, through newlocale() in p11-kit).
 *
 * Each wrapper initialises ASan (a no-op after the first time) before taking the lock, then calls
 * glibc's function.
 *
 * It also gives UBSan its options: libubsan (loaded with pg_sync.so) reads UBSAN_OPTIONS from
 * /proc/self/environ when it first reports, in a server child process, and PostgreSQL has by then
 * overwritten that memory with the process title; so they are compiled in instead
 * (-DUBSAN_OPTIONS_DEFAULT=...). Its log_path is ignored there: UBSan reports go to stderr, the
 * server log.
 *
 *   gcc -shared -fPIC -O2 -DUBSAN_OPTIONS_DEFAULT='"print_stacktrace=1"' -o asan_first.so asan_first.c
 *   LD_PRELOAD=$(readlink -f "$(gcc -print-file-name=libasan.so)"):asan_first.so postgres ...
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <locale.h>

extern void __asan_init(void);

#define FORWARD(ret, name, params, args)                                                          \
    ret name params                                                                               \
    {                                                                                             \
        static ret(*real) params;                                                                 \
        __asan_init();                                                                            \
        if (!real)                                                                                \
            real = (ret(*) params)dlsym(RTLD_NEXT, #name);                                        \
        return real args;                                                                         \
    }

FORWARD(char *, bindtextdomain, (const char *domain, const char *dir), (domain, dir))
FORWARD(char *, bind_textdomain_codeset, (const char *domain, const char *codeset), (domain, codeset))
FORWARD(char *, textdomain, (const char *domain), (domain))
FORWARD(char *, setlocale, (int category, const char *locale), (category, locale))
FORWARD(locale_t, newlocale, (int mask, const char *locale, locale_t base), (mask, locale, base))
FORWARD(locale_t, duplocale, (locale_t locale), (locale))

#ifdef UBSAN_OPTIONS_DEFAULT
const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void) { return UBSAN_OPTIONS_DEFAULT; }
#endif
