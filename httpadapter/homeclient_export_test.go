package httpadapter

// RefuseNonPublic exposes the HomeClient's dial guard to tests.
var RefuseNonPublic = refuseNonPublic
