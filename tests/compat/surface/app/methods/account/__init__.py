"""The account methods, re-exported from Toto's built-ins as the original's simple template did."""

import toto.methods.account.create as create
import toto.methods.account.login as login
import toto.methods.account.logout as logout
import toto.methods.account.update as update
