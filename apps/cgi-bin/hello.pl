#!/usr/bin/env perl
# GET /hello in Perl: the same bytes as /hello (POSIX sh) and /hello.py, as a CGI script.
#
# The request is in %ENV (RFC 3875 §4.1), the answer goes to STDOUT (§6): header lines,
# a blank line, the body. The family's rules by hand: PATH_INFO (as in /hello.pl/x) makes
# an unknown path, methods other than GET and HEAD get a 405 with Allow, and HEAD gets the
# headers without the body (§4.3.3).
use strict;
use warnings;

my $method = $ENV{REQUEST_METHOD} // 'GET';
my ($status, $body, $allow) = ('200 OK', "Hello, world!\n", '');
if (($ENV{PATH_INFO} // '') ne '') {
    $status = '404 Not Found';
    $body = "Not found: the family's routes are /hello, /echo, /env, /whoami, /sleep,"
        . " /cpu, /stream, /events, /upload, /page, /ws and /chat.\n";
}
elsif ($method ne 'GET' && $method ne 'HEAD') {
    ($status, $allow) = ('405 Method Not Allowed', 'GET, HEAD');
    $body = "Method not allowed: /hello accepts $allow.\n";
}

binmode STDOUT;    # bytes as they are: no newline or encoding translation
print "Status: $status\n";
print "Content-Type: text/plain; charset=utf-8\n";
print 'Content-Length: ', length($body), "\n";
print "Allow: $allow\n" if $allow;
print "\n";
print $body if $method ne 'HEAD';
