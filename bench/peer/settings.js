// Node-RED settings for the side-by-side benchmark (bench/peer/run.py): no editor, no admin API,
// warnings only, nothing phoned home. The flow file is given on the command line.
module.exports = {
    uiHost: "127.0.0.1",
    uiPort: Number(process.env.NODE_RED_PORT || 1880),
    httpAdminRoot: false,
    httpNodeRoot: false,
    flowFilePretty: false,
    credentialSecret: false,
    logging: {console: {level: "warn", metrics: false, audit: false}},
    diagnostics: {enabled: false, ui: false},
    runtimeState: {enabled: false, ui: false},
    telemetry: {enabled: false},
    externalModules: {autoInstall: false, palette: {allowInstall: false}},
    functionExternalModules: false,
};
