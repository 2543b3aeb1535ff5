// An Express app that trusts caddy-lb as its proxy, the way a user would
// configure it, and reports what Express concludes about the request.
// Usage: node app.js <port> <trusted proxy address>
const express = require('express');

const [port, trusted] = process.argv.slice(2);
const app = express();
app.set('trust proxy', trusted); // e.g. 'loopback' or '127.0.0.1'

app.get('/whoami', (req, res) => {
  res.json({
    ip: req.ip,
    ips: req.ips,
    protocol: req.protocol,
    secure: req.secure,
    host: req.host, // Express 5: from X-Forwarded-Host when trusted, port included
    hostname: req.hostname,
    forwardedPort: req.get('X-Forwarded-Port') || '',
  });
});

app.get('/redirect', (req, res) => {
  // What a framework does to build an absolute URL.
  res.redirect(302, `${req.protocol}://${req.host}/whoami`);
});

const server = app.listen(Number(port), '127.0.0.1', () => {
  console.log(`express listening on 127.0.0.1:${port}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
