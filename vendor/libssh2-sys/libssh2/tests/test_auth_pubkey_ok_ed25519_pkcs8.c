/* Copyright (C) The libssh2 project and its contributors.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */

#include "runner.h"

int test(LIBSSH2_SESSION *session)
{
#if LIBSSH2_ED25519 && \
    !defined(LIBSSH2_LIBGCRYPT) && !defined(LIBSSH2_WINCNG)
    /* set in Dockerfile */
    return test_auth_pubkey(session, 0,
                            "libssh2",
                            NULL,
                            "keys/id_ed25519_pkcs8.pub",
                            "keys/id_ed25519_pkcs8");
#else
    (void)session;
    return 0;
#endif
}
